//! `hsx export`: what each format writes, checked here with hsx's own primitives and ed25519-dalek
//! (the independent verifiers run in `make interop-check`), and what it refuses.
mod common;

use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};
use hsx::export::{export, sslib_keyid, ExportError, ExportOptions, Format};
use hsx::ledger::{
    Determinism, GitState, Ledger, LedgerWriter, Locations, Recorder, Root, SigningKeyFile, StageOutcome, StageSpec,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn b64d(s: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ledger_of(p: &Path) -> Ledger {
    serde_json::from_value(read_json(p)).unwrap()
}

/// Checks a DSSE envelope's signature with ed25519-dalek over PAE(payloadType, payload); returns the payload.
fn check_envelope(env: &Value, key: &VerifyingKey, keyid: &str, payload_type: &str) -> Vec<u8> {
    assert_eq!(env["payloadType"], payload_type);
    let payload = b64d(&env["payload"]);
    let sigs = env["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0]["keyid"], keyid);
    let sig = Signature::from_slice(&b64d(&sigs[0]["sig"])).unwrap();
    key.verify_strict(&hsx::canonical::pae(payload_type, &payload), &sig).expect("the envelope's signature verifies");
    payload
}

fn run_export(
    format: Format,
    ledger: &Path,
    out: &Path,
    key: &Path,
) -> Result<hsx::export::ExportSummary, ExportError> {
    export(&ExportOptions { format, ledger, out, mirror: None, trusted: None, expect_head: None, key, expires: None })
}

#[test]
fn dsse_and_sigstore_rewrap_the_ledger_signers_own_signatures() {
    let d = tempfile::tempdir().unwrap();
    let (path, _) = common::fixture_ledger(d.path());
    let ledger = ledger_of(&path);
    let public = hsx::ledger::keys::parse_public_key(&ledger.header.signer.public_key).unwrap();
    let key_id = ledger.header.signer.key_id.clone();
    // No key is needed: the key path does not exist.
    let nokey = d.path().join("no-such-key.pem");
    let s = run_export(Format::Dsse, &path, &d.path().join("dsse"), &nokey).unwrap();
    assert_eq!((s.documents, s.export_signer.as_deref()), (ledger.entries.len() + 1, None));
    let text = std::fs::read_to_string(d.path().join("dsse/ledger.dsse.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), ledger.entries.len() + 1);
    for (e, env) in ledger.entries.iter().zip(&lines) {
        let payload = check_envelope(env, &public, &key_id, hsx::ledger::ENTRY_PAYLOAD_TYPE);
        assert_eq!(hsx::canonical::sha256_hex(&payload), e.hash, "entry {}", e.seq);
    }
    let head = check_envelope(lines.last().unwrap(), &public, &key_id, hsx::ledger::HEAD_PAYLOAD_TYPE);
    let head: Value = serde_json::from_slice(&head).unwrap();
    assert_eq!((&head["hash"], &head["entries"]), (&json!(ledger.entries.last().unwrap().hash), &json!(4)));
    let pem = std::fs::read_to_string(d.path().join("dsse/ledger_signer.pem")).unwrap();
    assert_eq!(VerifyingKey::from_public_key_pem(&pem).unwrap(), public);
    let manifest = read_json(&d.path().join("dsse/export.json"));
    assert_eq!(manifest["ledger_signer"]["key_id"], key_id);
    assert_eq!(manifest["documents"][1]["line"], 2);
    assert_eq!(manifest["documents"][1]["entry_hash"], ledger.entries[1].hash);
    assert!(manifest["export_signer"].is_null());

    // Sigstore: the same envelopes in bundles v0.3 with a public-key hint and no log entry.
    run_export(Format::Sigstore, &path, &d.path().join("sig"), &nokey).unwrap();
    for (i, e) in ledger.entries.iter().enumerate() {
        let b = read_json(&d.path().join(format!("sig/bundles/{:04}-{}.sigstore.json", e.seq, e.stage)));
        assert_eq!(b["mediaType"], "application/vnd.dev.sigstore.bundle.v0.3+json");
        assert_eq!(b["verificationMaterial"]["publicKey"]["hint"], key_id);
        assert_eq!(b["verificationMaterial"]["tlogEntries"], json!([]));
        assert_eq!(b["dsseEnvelope"], lines[i]);
    }
    assert_eq!(&read_json(&d.path().join("sig/bundles/head.sigstore.json"))["dsseEnvelope"], lines.last().unwrap());
}

#[test]
fn in_toto_layout_matches_each_input_with_its_producers_product() {
    let d = tempfile::tempdir().unwrap();
    let (path, roots) = common::fixture_ledger(d.path());
    // A re-run of the first stage: the earlier entry becomes `ingest#0`, still the producer its reader read.
    {
        let k = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
        let run = roots.run.clone().unwrap();
        let ws = roots.workspace.clone().unwrap();
        let mut w = LedgerWriter::open(&path, "fx", &Locations::new(&run, &ws), k).unwrap();
        let mut rec = Recorder {
            writer: &mut w,
            roots: roots.clone(),
            config: json!({"experiment": {"id": "fx", "seed": 42}}),
            master_seed: 42,
            git: GitState::NoRepository,
            env: Box::new(|| json!({"os": "test"})),
        };
        let spec = StageSpec {
            stage: "ingest".into(),
            params: json!({"n": 3}),
            inputs: vec![(Root::Workspace, "inputs/a.txt".into())],
            determinism: Determinism::Bitwise,
        };
        rec.record::<std::io::Error>(spec, |_| {
            Ok(StageOutcome { outputs: vec![(Root::Run, "ingest/out.txt".into())], metrics: json!({}) })
        })
        .unwrap()
        .unwrap();
    }
    let ledger = ledger_of(&path);
    // The export signer is not the ledger's signer.
    let export_key = common::key(d.path(), "exporter.pem");
    let exporter = SigningKeyFile::load(&export_key).unwrap().public();
    let kid = sslib_keyid(&exporter);
    let s = run_export(Format::InToto, &path, &d.path().join("it"), &export_key).unwrap();
    assert_eq!(s.export_signer, Some(hsx::ledger::keys::key_id(&exporter)));
    assert_ne!(s.export_signer.as_deref(), Some(s.ledger_signer.as_str()));
    let layout_env = read_json(&d.path().join("it/root.layout"));
    let layout: Value =
        serde_json::from_slice(&check_envelope(&layout_env, &exporter, &kid, "application/vnd.in-toto+json")).unwrap();
    assert_eq!(layout["_type"], "layout");
    assert_eq!(layout["keys"][&kid]["keyval"]["public"], hex::encode(exporter.as_bytes()));
    let expires = layout["expires"].as_str().unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z'), "{expires}");
    let names: Vec<&str> = layout["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest#0", "transform", "summarize", "check", "ingest"]);
    let rules = |i: usize, which: &str| layout["steps"][i][which].clone();
    let rule = |r: &[&str]| json!(r);
    assert_eq!(
        rules(0, "expected_materials"),
        json!([
            rule(&["REQUIRE", "workspace/inputs/a.txt"]),
            rule(&["ALLOW", "workspace/inputs/a.txt"]),
            rule(&["DISALLOW", "*"])
        ])
    );
    assert!(rules(1, "expected_materials").as_array().unwrap().contains(&rule(&[
        "MATCH",
        "run/ingest/out.txt",
        "WITH",
        "PRODUCTS",
        "FROM",
        "ingest#0"
    ])));
    assert_eq!(rules(3, "expected_products"), json!([rule(&["DISALLOW", "*"])]));
    assert_eq!(layout["steps"][2]["pubkeys"], json!([kid]));
    // One link per entry, named for in-toto-verify, restating the recorded files.
    for (e, name) in ledger.entries.iter().zip(names) {
        let env = read_json(&d.path().join(format!("it/links/{name}.{}.link", &kid[..8])));
        let link: Value =
            serde_json::from_slice(&check_envelope(&env, &exporter, &kid, "application/vnd.in-toto+json")).unwrap();
        assert_eq!(link["name"], name);
        assert_eq!(link["environment"]["hsx"]["entry_hash"], e.hash);
        for f in &e.outputs {
            assert_eq!(link["products"][format!("{}/{}", f.root, f.path)]["sha256"], f.sha256);
        }
        assert_eq!(link["materials"].as_object().unwrap().len(), e.inputs.len());
    }
}

/// A ledger with a train and an evaluate stage, as the experiment names them.
fn model_ledger(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    let run = ws.join("runs/m");
    let roots = hsx::ledger::Roots { run: Some(run.clone()), data: None, workspace: Some(ws.clone()) };
    let ledger = ws.join("ledger/m.json");
    let k = SigningKeyFile::load(&common::key(dir, "signer.pem")).unwrap();
    let mut w = LedgerWriter::open(&ledger, "m", &Locations::new(&run, &ws), k).unwrap();
    let mut rec = Recorder {
        writer: &mut w,
        roots,
        config: json!({"experiment": {"id": "m", "seed": 42}, "train": {"lr": 3e-4}}),
        master_seed: 42,
        git: GitState::Repository { commit: "ab".repeat(20), dirty: false, diff_sha256: None },
        env: Box::new(|| json!({"hsx_version": "9.9.9", "stage_code_sha256": "cd".repeat(32)})),
    };
    let run2 = run.clone();
    let write = move |rel: &str, text: &str| {
        let p = run2.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let w2 = write.clone();
    rec.record::<std::io::Error>(
        StageSpec { stage: "prepare".into(), params: json!({}), inputs: vec![], determinism: Determinism::Bitwise },
        |_| {
            w2("prepare/human_train.jsonl", "{}\n");
            Ok(StageOutcome { outputs: vec![(Root::Run, "prepare/human_train.jsonl".into())], metrics: json!({}) })
        },
    )
    .unwrap()
    .unwrap();
    let w2 = write.clone();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "train-A".into(),
            params: json!({"train": {"lr": 3e-4}}),
            inputs: vec![(Root::Run, "prepare/human_train.jsonl".into())],
            determinism: Determinism::Bitwise,
        },
        |_| {
            w2("train-A/adapter/adapter_model.safetensors", "weights");
            w2("train-A/train_metrics.json", "{}");
            Ok(StageOutcome {
                outputs: vec![(Root::Run, "train-A/adapter".into()), (Root::Run, "train-A/train_metrics.json".into())],
                metrics: json!({}),
            })
        },
    )
    .unwrap()
    .unwrap();
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "evaluate-A".into(),
            params: json!({}),
            inputs: vec![(Root::Run, "train-A/adapter/adapter_model.safetensors".into())],
            determinism: Determinism::Bitwise,
        },
        |_| {
            write("evaluate-A/predictions.jsonl", "{}\n");
            write("evaluate-A/scores.jsonl", "{}\n");
            Ok(StageOutcome {
                outputs: vec![
                    (Root::Run, "evaluate-A/predictions.jsonl".into()),
                    (Root::Run, "evaluate-A/scores.jsonl".into()),
                ],
                metrics: json!({}),
            })
        },
    )
    .unwrap()
    .unwrap();
    ledger
}

#[test]
fn slsa_statements_describe_train_and_evaluate_entries() {
    let d = tempfile::tempdir().unwrap();
    let path = model_ledger(d.path());
    let ledger = ledger_of(&path);
    let export_key = common::key(d.path(), "exporter.pem");
    let exporter = SigningKeyFile::load(&export_key).unwrap().public();
    let s = run_export(Format::Slsa, &path, &d.path().join("slsa"), &export_key).unwrap();
    assert_eq!(s.documents, 2);
    let text = std::fs::read_to_string(d.path().join("slsa/provenance.intoto.jsonl")).unwrap();
    let st: Vec<Value> = text
        .lines()
        .map(|l| {
            let env: Value = serde_json::from_str(l).unwrap();
            let p = check_envelope(&env, &exporter, &sslib_keyid(&exporter), "application/vnd.in-toto+json");
            // The payload is written in canonical form.
            let v: Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(hsx::canonical::to_canonical_string(&v).as_bytes(), &p[..]);
            v
        })
        .collect();
    let (train, eval) = (&st[0], &st[1]);
    let (te, ee) = (&ledger.entries[1], &ledger.entries[2]);
    assert_eq!(train["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(train["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        train["subject"],
        json!([{"name": "run/train-A/adapter/adapter_model.safetensors",
        "digest": {"sha256": te.outputs[0].sha256}}])
    );
    assert_eq!(eval["subject"][0]["name"], "run/evaluate-A/scores.jsonl");
    let p = &train["predicate"];
    let ext = &p["buildDefinition"]["externalParameters"];
    assert_eq!(ext["seeds"], json!({"master": "42", "stage": te.seeds.stage.to_string()}));
    assert_eq!(ext["params"], te.params);
    let deps = p["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["name"], "run/prepare/human_train.jsonl");
    assert_eq!(deps[0]["annotations"]["role"], "training data");
    assert_eq!(deps[0]["annotations"]["producedBy"]["stage"], "prepare");
    assert_eq!(deps[1]["digest"], json!({"gitCommit": "ab".repeat(20)}));
    let edeps = &eval["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(edeps[0]["annotations"]["role"], "adapter");
    assert_eq!(edeps[0]["annotations"]["producedBy"]["entryHash"], te.hash);
    let rd = &p["runDetails"];
    assert_eq!(rd["builder"]["version"], json!({"hsx": "9.9.9", "gitCommit": "ab".repeat(20)}));
    assert_eq!(rd["builder"]["id"], format!("urn:hsx:ledger-signer:{}", ledger.header.signer.key_id));
    assert_eq!(
        rd["metadata"],
        json!({"invocationId": format!("sha256:{}", te.hash), "startedOn": te.started,
        "finishedOn": te.finished})
    );
    assert_eq!(rd["byproducts"][0]["digest"]["sha256"], te.hash);
    assert_eq!(rd["byproducts"][1]["name"], "run/train-A/train_metrics.json");
    assert_eq!(eval["predicate"]["runDetails"]["byproducts"][1]["name"], "run/evaluate-A/predictions.jsonl");
    assert_eq!(eval["predicate"]["runDetails"]["metadata"]["invocationId"], format!("sha256:{}", ee.hash));
}

#[test]
fn export_refuses_what_does_not_verify_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let (path, _) = common::fixture_ledger(d.path());
    let key = common::key(d.path(), "exporter.pem");
    let err =
        |format, ledger: &Path, out: &Path, key: &Path| run_export(format, ledger, out, key).unwrap_err().to_string();

    // A ledger that fails hsx verify: nothing is written.
    let tampered = d.path().join("ws/ledger/t.json");
    std::fs::copy(&path, &tampered).unwrap();
    std::fs::copy(path.with_file_name("fx.head.json"), tampered.with_file_name("t.head.json")).unwrap();
    let text = std::fs::read_to_string(&tampered).unwrap().replacen("\"n\": 2", "\"n\": 3", 1);
    std::fs::write(&tampered, text).unwrap();
    let e = err(Format::Dsse, &tampered, &d.path().join("o1"), &key);
    assert!(e.contains("does not verify") && e.contains("entry 0"), "{e}");
    assert!(!d.path().join("o1").exists());

    // A pinned head the ledger does not have.
    let e = export(&ExportOptions {
        format: Format::Dsse,
        ledger: &path,
        out: &d.path().join("o2"),
        mirror: None,
        trusted: None,
        expect_head: Some(&"ab".repeat(32)),
        key: &key,
        expires: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not verify"), "{e}");

    // A version-1 ledger (it verifies: alone in a directory, as tests/ledger_canonical.rs checks it): its
    // signatures are not DSSE signatures.
    let v1 = d.path().join("v1/exp-42-v1.json");
    std::fs::create_dir_all(v1.parent().unwrap()).unwrap();
    std::fs::copy(common::repo_path("tests/inputs/exp-42-v1.json"), &v1).unwrap();
    let e = err(Format::Dsse, &v1, &d.path().join("o3"), &key);
    assert!(e.contains("version 1") && e.contains("only version-2"), "{e}");

    // A directory that is not empty.
    std::fs::create_dir_all(d.path().join("o4")).unwrap();
    std::fs::write(d.path().join("o4/x"), "").unwrap();
    let e = err(Format::Dsse, &path, &d.path().join("o4"), &key);
    assert!(e.contains("not empty"), "{e}");

    // Formats that sign new documents need the export signer's key.
    let e = err(Format::InToto, &path, &d.path().join("o5"), &d.path().join("none.pem"));
    assert!(e.contains("in-toto") && e.contains("none.pem") && e.contains("hsx keygen"), "{e}");

    // SLSA needs a train or evaluate entry.
    let e = err(Format::Slsa, &path, &d.path().join("o6"), &key);
    assert!(e.contains("no train or evaluate entry"), "{e}");
}
