//! The tamper matrix: every field of every entry changed, removed and retyped; entries reordered,
//! deleted, appended by another key; signatures swapped; the file truncated; an artifact edited.
//! `verify` must fail every time and name the right entry (and field where there is one).
mod common;

use hsx::ledger::verify::{verify_value, VerifyOptions, VerifyReport};
use hsx::ledger::{keys, Roots, SigningKeyFile, TrustedKeys};
use serde_json::Value;
use std::path::Path;

fn verify(v: &Value, roots: &Roots) -> Result<VerifyReport, String> {
    verify_value(v, Path::new("fx.json"), roots, &VerifyOptions::default()).map_err(|e| e.to_string())
}

/// Every (JSON pointer) path under `v`, objects and arrays included, leaves too.
fn paths(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                paths(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                paths(c, p, out);
            }
        }
        _ => {}
    }
}

fn changed(v: &Value) -> Value {
    match v {
        Value::Null => Value::Bool(false),
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u + 1)
            } else if let Some(i) = n.as_i64() {
                Value::from(i - 1)
            } else {
                Value::from(n.as_f64().unwrap() * 2.0 + 1.0)
            }
        }
        Value::String(s) => {
            // Keep hex-looking strings hex-looking, so the test exercises more than "not hex".
            let mut c: Vec<char> = s.chars().collect();
            if let Some(last) = c.last_mut() {
                *last = if *last == '0' { '1' } else { '0' };
                Value::String(c.into_iter().collect())
            } else {
                Value::String("x".into())
            }
        }
        Value::Array(a) => {
            let mut a = a.clone();
            a.push(Value::from(1));
            Value::Array(a)
        }
        Value::Object(m) => {
            let mut m = m.clone();
            m.insert("zz_added".into(), Value::from(1));
            Value::Object(m)
        }
    }
}

fn retyped(v: &Value) -> Value {
    match v {
        Value::Null => Value::from(0),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => Value::Array(vec![Value::String(s.clone())]),
        Value::Array(_) => Value::Object(Default::default()),
        Value::Object(_) => Value::Array(vec![]),
    }
}

fn remove(root: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let last = last.replace("~1", "/").replace("~0", "~");
    match root.pointer_mut(parent).unwrap() {
        Value::Object(m) => {
            m.remove(&last);
        }
        Value::Array(a) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        _ => unreachable!(),
    }
}

fn assert_fails_at(r: Result<VerifyReport, String>, entry: Option<usize>, what: &str) {
    match r {
        Err(_) => {}
        Ok(rep) => {
            assert!(!rep.ok, "{what}: verify passed");
            let f = rep.first_failure.as_ref().expect("a failing report names its first failure");
            assert_eq!(f.entry, entry, "{what}: blamed {f}");
        }
    }
}

#[test]
fn untouched_ledger_verifies() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let rep = verify(&raw, &roots).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
    assert_eq!(rep.entries.len(), 4);
    assert_eq!(rep.missing_artifacts, 0);
}

#[test]
fn every_field_of_every_entry_changed_removed_or_retyped_fails_at_that_entry() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let n = raw["entries"].as_array().unwrap().len();
    let mut cases = 0;
    for i in 0..n {
        let mut ps = Vec::new();
        paths(&raw["entries"][i], format!("/entries/{i}"), &mut ps);
        for p in &ps {
            let orig = raw.pointer(p).unwrap().clone();
            for (kind, new) in [("changed", Some(changed(&orig))), ("retyped", Some(retyped(&orig))), ("removed", None)]
            {
                let mut m = raw.clone();
                match new {
                    Some(v) => *m.pointer_mut(p).unwrap() = v,
                    None => remove(&mut m, p),
                }
                assert_fails_at(verify(&m, &roots), Some(i), &format!("{kind} {p}"));
                cases += 1;
            }
        }
    }
    assert!(cases > 300, "only {cases} mutations were tried");
}

#[test]
fn header_edits_fail() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let mut ps = Vec::new();
    paths(&raw["header"], "/header".into(), &mut ps);
    for p in &ps {
        let orig = raw.pointer(p).unwrap().clone();
        for new in [Some(changed(&orig)), Some(retyped(&orig)), None] {
            let mut m = raw.clone();
            match new {
                Some(v) => *m.pointer_mut(p).unwrap() = v,
                None => remove(&mut m, p),
            }
            let r = verify(&m, &roots);
            let rep = match r {
                Err(_) => continue,
                Ok(r) => r,
            };
            assert!(!rep.ok, "header edit at {p} passed");
            let f = rep.first_failure.unwrap();
            assert!(f.entry.is_none() || f.entry == Some(0), "header edit at {p} blamed {f}");
        }
    }
}

#[test]
fn structural_tampering_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let text = std::fs::read_to_string(&ledger).unwrap();
    let raw: Value = serde_json::from_str(&text).unwrap();

    // Two entries swapped.
    let mut m = raw.clone();
    m["entries"].as_array_mut().unwrap().swap(1, 2);
    let rep = verify(&m, &roots).unwrap();
    let f = rep.first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(1), "seq"), "{f}");

    // One deleted.
    let mut m = raw.clone();
    m["entries"].as_array_mut().unwrap().remove(1);
    let f = verify(&m, &roots).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(1), "seq"), "{f}");

    // Two signatures swapped.
    let mut m = raw.clone();
    let s0 = m["entries"][0]["signature"].clone();
    m["entries"][0]["signature"] = m["entries"][2]["signature"].clone();
    m["entries"][2]["signature"] = s0;
    let f = verify(&m, &roots).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(0), "signature"), "{f}");

    // An entry appended, correctly chained and hashed, but signed by another key.
    let other = SigningKeyFile::load(&common::key(d.path(), "intruder.pem")).unwrap();
    let mut m = raw.clone();
    let mut e = m["entries"][3].clone();
    e["seq"] = Value::from(4);
    e["prev"] = m["entries"][3]["hash"].clone();
    e["started"] = m["entries"][3]["finished"].clone();
    e["finished"] = m["entries"][3]["finished"].clone();
    hsx::ledger::seal_value(&mut e, &other);
    m["entries"].as_array_mut().unwrap().push(e);
    let f = verify(&m, &roots).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(4), "signature"), "{f}");

    // The whole ledger re-signed by another key: signatures hold, but the signer is not trusted.
    let signer = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let tk = TrustedKeys::parse(&TrustedKeys::line_for(&signer.signer()), Path::new("trusted_keys")).unwrap();
    let opts = VerifyOptions { trusted: Some(tk.clone()), ..Default::default() };
    let good = verify_value(&raw, Path::new("fx.json"), &roots, &opts).unwrap();
    assert!(good.ok, "{:?}", good.first_failure);
    let mut m = raw.clone();
    m["header"]["signer"] = serde_json::to_value(keys::signer_of(&other.public())).unwrap();
    let hs = {
        let h: hsx::ledger::Header = serde_json::from_value(m["header"].clone()).unwrap();
        h.sha256()
    };
    let mut prev = hsx::ledger::ZERO_HASH.to_string();
    for e in m["entries"].as_array_mut().unwrap() {
        e["header_sha256"] = Value::String(hs.clone());
        e["prev"] = Value::String(prev.clone());
        hsx::ledger::seal_value(e, &other);
        prev = e["hash"].as_str().unwrap().to_owned();
    }
    assert!(verify(&m, &roots).unwrap().ok, "a consistently re-signed ledger is internally valid");
    let f = verify_value(&m, Path::new("fx.json"), &roots, &opts).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (None, "header.signer"), "{f}");

    // Truncated file: not a ledger at all (exit 2 in the CLI).
    for cut in [1, text.len() / 3, text.len() / 2, text.len() - 3] {
        assert!(serde_json::from_str::<Value>(&text[..cut]).is_err());
        std::fs::write(d.path().join("cut.json"), &text[..cut]).unwrap();
        let r = hsx::ledger::verify::verify_file(&d.path().join("cut.json"), &roots, &VerifyOptions::default());
        assert!(r.is_err(), "truncated at {cut} accepted");
    }
}

#[test]
fn edited_and_missing_artifacts() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let run = roots.run.clone().unwrap();

    // A file inside a recorded output directory, edited: blamed on the entry that wrote it.
    std::fs::write(run.join("transform/model/b.json"), "{\"x\":1}").unwrap();
    let f = verify(&raw, &roots).unwrap().first_failure.unwrap();
    assert_eq!(f.entry, Some(1), "{f}");
    assert!(f.field.starts_with("outputs[") && f.message.contains("tampered"), "{f}");
    std::fs::write(run.join("transform/model/b.json"), "{}").unwrap();

    // The first stage's output edited: the producer (entry 0) is named.
    std::fs::write(run.join("ingest/out.txt"), "seed 0\n").unwrap();
    let f = verify(&raw, &roots).unwrap().first_failure.unwrap();
    assert_eq!((f.entry, f.field.as_str()), (Some(0), "outputs[0]"), "{f}");

    // Missing is reported as missing, and fails only with --require-artifacts.
    std::fs::remove_file(run.join("ingest/out.txt")).unwrap();
    let rep = verify(&raw, &roots).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
    assert_eq!(rep.entries[0].verdict, "missing");
    assert!(rep.missing_artifacts >= 1);
    let strict = VerifyOptions { require_artifacts: true, ..Default::default() };
    let rep = verify_value(&raw, Path::new("fx.json"), &roots, &strict).unwrap();
    assert!(!rep.ok);
    assert_eq!(rep.first_failure.unwrap().entry, Some(0));
}

#[test]
fn unsafe_paths_in_a_ledger_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    for bad in ["/etc/passwd", "../../outside", "ingest/../../x"] {
        let mut m = raw.clone();
        m["entries"][2]["outputs"][0]["path"] = Value::String(bad.into());
        let f = verify(&m, &roots).unwrap().first_failure.unwrap();
        assert_eq!((f.entry, f.field.as_str()), (Some(2), "outputs[0].path"), "{bad}: {f}");
    }
    let mut m = raw.clone();
    m["header"]["run_dir"] = Value::String("/abs".into());
    let f = verify(&m, &roots).unwrap().first_failure.unwrap();
    assert_eq!(f.field, "header.run_dir");
}

/// Regression: serde_json's default float parser is not correctly rounded, so a ledger holding some
/// floats failed `verify` after a write and a read (entry hash mismatch). Needs `float_roundtrip`.
#[test]
fn floats_in_metrics_survive_a_write_and_a_read() {
    use hsx::ledger::{Determinism, GitState, LedgerWriter, Recorder, StageOutcome, StageSpec};
    use rand::{Rng, SeedableRng};
    let d = tempfile::tempdir().unwrap();
    let key = SigningKeyFile::load(&common::key(d.path(), "k.pem")).unwrap();
    let path = d.path().join("l.json");
    let mut w =
        LedgerWriter::open(&path, "f", &hsx::ledger::Locations::new(d.path().join("runs/f"), d.path()), key).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let floats: Vec<f64> = (0..20_000)
        .map(|i| match i % 4 {
            0 => rng.gen::<f64>(),
            1 => rng.gen::<f64>() * 10f64.powi(rng.gen_range(-300..300)),
            2 => f64::from(rng.gen::<f32>()),
            _ => (rng.gen::<f64>() * 1e6).round() / 1e6,
        })
        // Doubles in [2^53, 10^21) are written by RFC 8785 as integer digits beyond I-JSON's exact range,
        // which sealing refuses (hsx::canonical::first_non_i_json_number; tests/ledger_interop.rs).
        .filter(|f| !(f.abs() > hsx::canonical::I_JSON_MAX_INTEGER as f64 && f.abs() < 1e21))
        .collect();
    let mut rec = Recorder {
        writer: &mut w,
        roots: Roots::default(),
        config: serde_json::json!({"lr": 3e-4, "eps": 1e-8}),
        master_seed: 42,
        git: GitState::NoRepository,
        env: Box::new(|| serde_json::json!({"wall": 93.70261234})),
    };
    rec.record::<std::io::Error>(
        StageSpec {
            stage: "s".into(),
            params: serde_json::json!({}),
            inputs: vec![],
            determinism: Determinism::Bitwise,
        },
        |_| Ok(StageOutcome { outputs: vec![], metrics: serde_json::json!({ "floats": floats }) }),
    )
    .unwrap()
    .unwrap();
    drop(rec);
    drop(w);
    let rep = hsx::ledger::verify::verify_file(&path, &Roots::default(), &VerifyOptions::default()).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
}
