//! A ledger is untrusted input: random bytes, random edits of a valid ledger, deep nesting and huge
//! numbers never panic the parser or the verifier, and no edit that changes the JSON value verifies.
mod common;

use hsx::ledger::verify::{verify_value, VerifyOptions};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

fn fixture() -> &'static (String, hsx::ledger::Roots, tempfile::TempDir) {
    static F: OnceLock<(String, hsx::ledger::Roots, tempfile::TempDir)> = OnceLock::new();
    F.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let (ledger, roots) = common::fixture_ledger(d.path());
        // The signed head travels with the ledger: every fuzzed copy gets it (see check_bytes).
        std::fs::copy(hsx::ledger::head::head_path_for(&ledger), d.path().join("head.json")).unwrap();
        (std::fs::read_to_string(ledger).unwrap(), roots, d)
    })
}

fn check_bytes(bytes: &[u8]) -> Option<bool> {
    let (_, roots, d) = fixture();
    let p = d.path().join(format!("fuzz-{:?}.json", std::thread::current().id()));
    std::fs::write(&p, bytes).unwrap();
    std::fs::copy(d.path().join("head.json"), hsx::ledger::head::head_path_for(&p)).unwrap();
    match hsx::ledger::verify::verify_file(&p, roots, &VerifyOptions::default()) {
        Ok(rep) => Some(rep.ok),
        Err(_) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = check_bytes(&bytes);
    }

    #[test]
    fn edits_of_a_valid_ledger_never_verify_unless_the_value_is_unchanged(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)
    ) {
        let (text, _, _) = fixture();
        let mut bytes = text.clone().into_bytes();
        for (idx, b, op) in edits {
            let i = idx.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => { bytes.insert(i, b); }
                _ => { bytes.remove(i); }
            }
        }
        let orig: Value = serde_json::from_str(text).unwrap();
        let same = serde_json::from_slice::<Value>(&bytes).map(|v| v == orig).unwrap_or(false);
        if let Some(ok) = check_bytes(&bytes) {
            prop_assert!(!ok || same, "an edit that changed the ledger verified");
        }
    }
}

#[test]
fn the_unedited_fixture_verifies_through_the_fuzzed_path() {
    // Without this, a check that rejected everything would make the property above hold vacuously.
    let (text, _, _) = fixture();
    assert_eq!(check_bytes(text.as_bytes()), Some(true));
}

#[test]
fn deep_nesting_and_huge_numbers_are_errors_not_crashes() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(check_bytes(deep.as_bytes()), None);
    let (text, roots, _) = fixture();
    let mut v: Value = serde_json::from_str(text).unwrap();
    v["entries"][0]["seq"] = serde_json::from_str("1e400").unwrap_or(Value::from(f64::MAX));
    let rep = verify_value(&v, Path::new("x"), roots, &VerifyOptions::default()).unwrap();
    assert!(!rep.ok);
    let mut v: Value = serde_json::from_str(text).unwrap();
    v["entries"][1]["metrics"] = serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
    assert!(!verify_value(&v, Path::new("x"), roots, &VerifyOptions::default()).unwrap().ok);
}
