//! `hsx verify` holds the analysis to the signed pre-registration: ledgers written by the real recorder
//! and signed by one key, whose chain and signatures are valid, still fail when a model stage precedes
//! the pre-registration or compare used other values than the registered ones.
mod common;

use hsx::config::Analysis;
use hsx::ledger::verify::VerifyOptions;
use hsx::ledger::{Determinism, GitState, LedgerWriter, Recorder, Roots, SigningKeyFile, StageOutcome, StageSpec};
use hsx::prereg::AnalysisPlan;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One stage as the ledger should record it: name, params, metrics.
type Step = (&'static str, Value, Value);

/// A signed ledger of `steps`, in order, written by the recorder with one key.
fn ledger(dir: &Path, steps: &[Step]) -> PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("runs/px")).unwrap();
    let roots = Roots { run: Some(ws.join("runs/px")), data: None, workspace: Some(ws.clone()) };
    let path = ws.join("ledger/px.json");
    let key = SigningKeyFile::load(&common::key(dir, "signer.pem")).unwrap();
    let mut w = LedgerWriter::open(&path, "px", &hsx::ledger::Locations::new(ws.join("runs/px"), &ws), key).unwrap();
    let mut rec = Recorder {
        writer: &mut w,
        roots,
        config: json!({"experiment": {"id": "px", "seed": 42}}),
        master_seed: 42,
        git: GitState::Repository {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            dirty: false,
            diff_sha256: None,
        },
        env: Box::new(|| json!({"os": "test"})),
    };
    for (stage, params, metrics) in steps {
        let metrics = metrics.clone();
        rec.record::<std::io::Error>(
            StageSpec {
                stage: (*stage).into(),
                params: params.clone(),
                inputs: vec![],
                determinism: Determinism::Bitwise,
            },
            move |_| Ok(StageOutcome { outputs: vec![], metrics }),
        )
        .unwrap()
        .unwrap();
    }
    drop(rec);
    drop(w);
    path
}

fn plan(a: &Analysis) -> Value {
    serde_json::to_value(AnalysisPlan::new(a, &["em", "f1", "rougeL"], &"ab".repeat(32))).unwrap()
}

fn preregister(a: &Analysis) -> Step {
    ("preregister", json!({"analysis": a}), json!({"plan": plan(a)}))
}

fn model(stage: &'static str) -> Step {
    (stage, json!({}), json!({"ok": true}))
}

/// compare declaring `declared` settings and using the plan made from `used`.
fn compare(declared: &Analysis, used: &Analysis) -> Step {
    ("compare", json!({"eval": {}, "analysis": declared}), json!({"plan": plan(used)}))
}

fn verify(path: &Path) -> hsx::ledger::verify::VerifyReport {
    hsx::audit::verify(path, None, &VerifyOptions::default()).unwrap()
}

#[test]
fn a_run_that_follows_its_pre_registration_verifies() {
    let d = tempfile::tempdir().unwrap();
    let a = Analysis::default();
    let steps = [model("prepare"), preregister(&a), model("train-A"), model("evaluate-A"), compare(&a, &a)];
    let r = verify(&ledger(d.path(), &steps));
    assert!(r.ok, "{:?}", r.first_failure);
}

#[test]
fn a_pre_registration_after_an_evaluate_entry_fails_verify_naming_the_entry() {
    let d = tempfile::tempdir().unwrap();
    let a = Analysis::default();
    // Chain and signatures are intact: the same key signed every entry in this order.
    let steps = [model("prepare"), model("train-A"), model("evaluate-A"), preregister(&a), compare(&a, &a)];
    let r = verify(&ledger(d.path(), &steps));
    assert!(!r.ok);
    let f = r.first_failure.unwrap();
    assert_eq!((f.entry, f.stage.as_deref(), f.field.as_str()), (Some(1), Some("train-A"), "seq"), "{f}");
    assert!(f.message.contains("precedes the pre-registration (entry 3)"), "{f}");
    assert_eq!(r.entries[1].verdict, "failed");

    // Re-training after the pre-registration is what makes it valid again.
    let d = tempfile::tempdir().unwrap();
    let steps = [
        model("prepare"),
        model("train-A"),
        model("evaluate-A"),
        preregister(&a),
        model("train-A"),
        model("evaluate-A"),
        compare(&a, &a),
    ];
    let r = verify(&ledger(d.path(), &steps));
    assert!(r.ok, "{:?}", r.first_failure);
}

#[test]
fn model_0s_evaluation_before_the_pre_registration_fails_verify_like_any_model_stage() {
    let a = Analysis::default();
    // Model 0 (the base model, zero-shot) scored on the test split before the plan was signed.
    let d = tempfile::tempdir().unwrap();
    let steps = [
        model("prepare"),
        model("evaluate-0"),
        preregister(&a),
        model("train-A"),
        model("evaluate-A"),
        compare(&a, &a),
    ];
    let r = verify(&ledger(d.path(), &steps));
    let f = r.first_failure.expect("verify must fail");
    assert_eq!((f.entry, f.stage.as_deref(), f.field.as_str()), (Some(1), Some("evaluate-0"), "seq"), "{f}");
    assert!(f.message.contains("evaluate-0 (entry 1) precedes the pre-registration (entry 2)"), "{f}");
    // After it, in the registry's order, the ledger verifies.
    let d = tempfile::tempdir().unwrap();
    let steps = [
        model("prepare"),
        preregister(&a),
        model("train-A"),
        model("evaluate-0"),
        model("evaluate-A"),
        compare(&a, &a),
    ];
    let r = verify(&ledger(d.path(), &steps));
    assert!(r.ok, "{:?}", r.first_failure);
    for s in hsx::stages::Stage::ALL {
        let model_stage = matches!(s, hsx::stages::Stage::Train(_) | hsx::stages::Stage::Evaluate(_));
        assert_eq!(hsx::prereg::is_model_stage(s.name()), model_stage, "{s}");
    }
}

#[test]
fn a_compare_entry_whose_alpha_differs_fails_verify_naming_the_field() {
    let a = Analysis::default();
    let other = Analysis { alpha: 0.05, ..Analysis::default() };
    // Declared α differs (the config was edited after the pre-registration).
    let d = tempfile::tempdir().unwrap();
    let steps = [model("prepare"), preregister(&a), model("train-A"), model("evaluate-A"), compare(&other, &a)];
    let r = verify(&ledger(d.path(), &steps));
    let f = r.first_failure.expect("verify must fail");
    assert_eq!((f.entry, f.stage.as_deref(), f.field.as_str()), (Some(4), Some("compare"), "params.analysis"), "{f}");
    assert!(f.message.contains("/alpha: registered 0.025, used 0.05"), "{f}");
    // The plan compare used differs.
    let d = tempfile::tempdir().unwrap();
    let steps = [model("prepare"), preregister(&a), model("train-A"), model("evaluate-A"), compare(&a, &other)];
    let r = verify(&ledger(d.path(), &steps));
    let f = r.first_failure.expect("verify must fail");
    assert_eq!((f.entry, f.field.as_str()), (Some(4), "metrics.plan"), "{f}");
    assert!(f.message.contains("alpha: registered 0.025, used 0.05"), "{f}");
}

#[test]
fn a_compare_with_a_plan_but_no_pre_registration_fails() {
    let d = tempfile::tempdir().unwrap();
    let a = Analysis::default();
    let steps = [model("prepare"), model("train-A"), model("evaluate-A"), compare(&a, &a)];
    let r = verify(&ledger(d.path(), &steps));
    let f = r.first_failure.expect("verify must fail");
    assert_eq!((f.entry, f.field.as_str()), (Some(3), "metrics.plan"), "{f}");
}

/// The review's attack: `bootstrap_resamples` of the pre-registration rewritten `1e4`. Every hash and
/// signature still holds (they cover the canonical form, `10000` either way); verify reads the entry as
/// tampered instead of blaming the signer for "settings that differ". The float spelling hsx itself
/// writes (`10000.0`) is the same sealed number: compared canonically, it differs from nothing.
#[test]
fn a_respelt_pre_registration_is_tampered_not_a_difference_the_signer_made() {
    let d = tempfile::tempdir().unwrap();
    let a = Analysis::default();
    let steps = [model("prepare"), preregister(&a), model("train-A"), model("evaluate-A"), compare(&a, &a)];
    let path = ledger(d.path(), &steps);
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(raw["entries"][1]["metrics"]["plan"]["bootstrap_resamples"], json!(a.bootstrap_resamples));
    let spelt = |token: &str| {
        let mut m = raw.clone();
        m["entries"][1]["metrics"]["plan"]["bootstrap_resamples"] = json!("@@n@@");
        let text = serde_json::to_string_pretty(&m).unwrap().replace("\"@@n@@\"", token);
        std::fs::write(&path, text).unwrap();
        verify(&path)
    };
    let n = a.bootstrap_resamples;
    let exponent = format!("{}e{}", n / 1000, 3);
    let r = spelt(&exponent);
    let f = r.first_failure.expect("a re-spelt pre-registration verified");
    assert_eq!(
        (f.entry, f.stage.as_deref(), f.field.as_str()),
        (Some(1), Some("preregister"), "metrics.plan.bootstrap_resamples"),
        "{f}"
    );
    assert!(f.message.starts_with("tampered:") && !f.message.contains("differ"), "{f}");
    let r = spelt(&format!("{n}.0"));
    assert!(r.ok, "{:?}", r.first_failure);
}
