//! A ledger used as a weapon: crafted paths that climb out of their root, and edited entries with a
//! zeroed signature. Every command that reads a ledger verifies it first, refuses it naming the entry,
//! and touches nothing outside its output directory.
mod common;

use hsx::ledger::{seal_value, store, LedgerError, SigningKeyFile};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Re-chains and re-signs entries `from..` with `key`: the ledger stays internally consistent, as a
/// key holder (or an attacker with their own key) could make it.
fn reseal_from(m: &mut Value, from: usize, key: &SigningKeyFile) {
    let n = m["entries"].as_array().unwrap().len();
    for i in from..n {
        if i > 0 {
            m["entries"][i]["prev"] = m["entries"][i - 1]["hash"].clone();
        }
        seal_value(&mut m["entries"][i], key);
    }
}

/// A crafted ledger whose first output is `path`, consistently signed; and a victim file outside.
fn crafted(d: &Path, path: &str) -> (PathBuf, PathBuf) {
    let (ledger, _) = common::fixture_ledger(d);
    let key = SigningKeyFile::load(&common::key(d, "signer.pem")).unwrap();
    let mut m = read(&ledger);
    m["entries"][0]["stage"] = Value::String("prepare".into());
    m["entries"][0]["outputs"][0]["path"] = Value::String(path.into());
    reseal_from(&mut m, 0, &key);
    let evil = d.join("ws/evil.json");
    write(&evil, &m);
    // The attacker signs a matching head too: the refusal must come from the path, not the head.
    let typed: hsx::ledger::Ledger = serde_json::from_value(m).unwrap();
    hsx::ledger::SignedHead::new(&typed, &key).write(&hsx::ledger::head::head_path_for(&evil)).unwrap();
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    (evil, victim)
}

fn hsx(args: &[&str], ledger: &Path, cwd: &Path) -> (Option<i32>, String) {
    let out = Command::new(common::hsx_bin()).args(args).arg("--ledger").arg(ledger).current_dir(cwd).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn reproduce_of_a_ledger_whose_output_climbs_out_of_the_run_directory_is_refused_and_the_victim_untouched() {
    for path in ["../../victim.txt", "/tmp/hsx-victim-absolute.txt", "a/../../../victim.txt"] {
        let d = tempfile::tempdir().unwrap();
        let (evil, victim) = crafted(d.path(), path);
        let key = common::key(d.path(), "signer.pem");
        let (code, out) = hsx(
            &["reproduce", "--from", "prepare", "--out", "repro", "--key", key.to_str().unwrap()],
            &evil,
            &d.path().join("ws"),
        );
        assert_eq!(code, Some(2), "{path}: {out}");
        assert!(
            out.contains("does not verify") && out.contains("entry 0") && out.contains("outputs[0].path"),
            "{path}: {out}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{path}: victim changed");
        assert!(!d.path().join("ws/repro").exists(), "{path}: reproduce created its output before refusing");
        // The library refuses it too, naming the entry.
        let e = store::read(&evil).unwrap_err();
        assert!(matches!(e, LedgerError::Unverified { ref failure, .. } if failure.entry == Some(0)), "{e}");
    }
}

#[test]
fn an_edited_entry_with_a_zeroed_signature_is_refused_by_reproduce_report_and_run() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let mut m = read(&ledger);
    m["entries"][2]["metrics"]["f1"] = Value::from(0.99);
    m["entries"][2]["signature"] = Value::String("0".repeat(128));
    write(&ledger, &m);
    let ws = d.path().join("ws");
    let key = common::key(d.path(), "signer.pem");
    let k = key.to_str().unwrap();
    for args in [vec!["reproduce", "--out", "repro", "--key", k], vec!["report", "--out", "out/REPORT.md"]] {
        let (code, out) = hsx(&args, &ledger, &ws);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains("does not verify") && out.contains("entry 2"), "{args:?}: {out}");
    }
    assert!(!ws.join("repro").exists() && !ws.join("out").exists());
    let before = std::fs::read(&ledger).unwrap();
    let cfg = common::repo_path("configs/smoke.toml");
    let (code, out) = hsx(&["run", "--config", cfg.to_str().unwrap(), "--key", k], &ledger, &ws);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("does not verify") && out.contains("entry 2"), "{out}");
    assert_eq!(std::fs::read(&ledger).unwrap(), before, "run appended to a ledger that does not verify");
}

#[test]
fn header_locations_that_are_absolute_or_climb_after_a_name_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let raw = read(&ledger);
    for (field, bad) in
        [("run_dir", "/etc"), ("run_dir", "runs/../../x"), ("workspace", "a/.."), ("workspace", "C:\\x")]
    {
        let mut m = raw.clone();
        m["header"][field] = Value::String(bad.into());
        let rep = hsx::ledger::verify::verify_value(&m, Path::new("fx.json"), &roots, &Default::default()).unwrap();
        let f = rep.first_failure.unwrap();
        assert_eq!(f.field, format!("header.{field}"), "{bad}: {f}");
    }
}
