//! Key validity windows that mean something: times that go backwards, a finish before its start, a
//! duplicate or inverted trusted-keys line; and signing keys kept where they can leak or be swapped.
mod common;

use hsx::ledger::verify::{verify_value, VerifyOptions};
use hsx::ledger::{keys::KeyError, seal_value, SigningKeyFile, TrustedKeys};
use serde_json::Value;
use std::path::Path;

fn reseal_from(m: &mut Value, from: usize, key: &SigningKeyFile) {
    let n = m["entries"].as_array().unwrap().len();
    for i in from..n {
        if i > 0 {
            m["entries"][i]["prev"] = m["entries"][i - 1]["hash"].clone();
        }
        seal_value(&mut m["entries"][i], key);
    }
}

#[test]
fn a_backdated_finish_or_a_chain_going_back_in_time_fails_even_when_signed_by_the_key_holder() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&ledger).unwrap()).unwrap();
    let check = |m: &Value| verify_value(m, Path::new("fx.json"), &roots, &VerifyOptions::default()).unwrap();

    let mut m = raw.clone();
    m["entries"][3]["finished"] = Value::String("2001-01-01T00:00:00Z".into());
    reseal_from(&mut m, 3, &key);
    let f = check(&m).first_failure.expect("finished before started accepted");
    assert_eq!((f.entry, f.field.as_str()), (Some(3), "finished"), "{f}");

    let mut m = raw.clone();
    m["entries"][2]["started"] = Value::String("2001-01-01T00:00:00Z".into());
    m["entries"][2]["finished"] = Value::String("2001-01-01T00:00:01Z".into());
    reseal_from(&mut m, 2, &key);
    let f = check(&m).first_failure.expect("backdated entry accepted");
    assert_eq!((f.entry, f.field.as_str()), (Some(2), "started"), "{f}");
    assert!(f.message.contains("previous entry finished"), "{f}");

    // A window that ended before the run: backdating only the finish cannot get past it.
    let s = key.signer();
    let tk = TrustedKeys::parse(
        &format!("{} valid-before=2002-01-01T00:00:00Z ed25519 {}\n", s.key_id, s.public_key),
        Path::new("tk"),
    )
    .unwrap();
    let rep =
        verify_value(&raw, Path::new("fx.json"), &roots, &VerifyOptions { trusted: Some(tk), ..Default::default() })
            .unwrap();
    assert_eq!(rep.first_failure.unwrap().field, "header.signer");
}

#[test]
fn a_duplicate_or_inverted_trusted_keys_line_is_an_error_naming_the_line() {
    let d = tempfile::tempdir().unwrap();
    let s = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap().signer();
    let windowed = format!("{} valid-before=2027-01-01T00:00:00Z ed25519 {}", s.key_id, s.public_key);
    let open = format!("{} ed25519 {}", s.key_id, s.public_key);
    let e = TrustedKeys::parse(&format!("{windowed}\n# c\n{open}\n"), Path::new("tk")).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("already listed on line 1"), "{e}");
    let inverted = format!(
        "{} valid-after=2027-01-01T00:00:00Z,valid-before=2026-01-01T00:00:00Z ed25519 {}",
        s.key_id, s.public_key
    );
    let e = TrustedKeys::parse(&inverted, Path::new("tk")).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("inverted"), "{e}");
}

#[test]
fn a_signing_key_inside_a_git_work_tree_or_a_world_writable_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("repo/.git")).unwrap();
    let e = SigningKeyFile::generate(&d.path().join("repo/keys/k.pem"), false).unwrap_err();
    assert!(matches!(e, KeyError::Location { .. }) && e.to_string().contains("git work tree"), "{e}");
    // A key copied there (mode 0600) is refused on load as well.
    let ok = d.path().join("safe/k.pem");
    SigningKeyFile::generate(&ok, false).unwrap();
    std::fs::create_dir_all(d.path().join("repo/k")).unwrap();
    std::fs::copy(&ok, d.path().join("repo/k/k.pem")).unwrap();
    std::fs::set_permissions(d.path().join("repo/k/k.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(SigningKeyFile::load(&d.path().join("repo/k/k.pem")), Err(KeyError::Location { .. })));

    let ww = d.path().join("shared");
    std::fs::create_dir_all(&ww).unwrap();
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = SigningKeyFile::generate(&ww.join("k.pem"), false).unwrap_err().to_string();
    assert!(e.contains("writable by group or others") && e.contains("shared"), "{e}");
    // Sticky world-writable (like /tmp) is fine, as is a private temp dir (what CI's mktemp gives).
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o1777)).unwrap();
    SigningKeyFile::generate(&ww.join("k.pem"), false).unwrap();
    SigningKeyFile::load(&ok).unwrap();
}

#[test]
fn a_repeated_option_is_an_error_naming_the_line_and_the_option() {
    let d = tempfile::tempdir().unwrap();
    let s = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap().signer();
    // The later `valid-before` would have widened the window by a year.
    for opts in [
        "valid-before=2026-01-01T00:00:00Z,valid-before=2027-01-01T00:00:00Z",
        "valid-after=2025-01-01T00:00:00Z,valid-before=2027-01-01T00:00:00Z,valid-after=2020-01-01T00:00:00Z",
    ] {
        let text = format!("# signers\n{} {opts} ed25519 {}\n", s.key_id, s.public_key);
        let e = TrustedKeys::parse(&text, Path::new("tk")).unwrap_err().to_string();
        let opt = if opts.matches("valid-before").count() == 2 { "valid-before" } else { "valid-after" };
        assert!(e.contains("tk line 2") && e.contains(&format!("option {opt} is given twice")), "{e}");
    }
}

#[test]
fn a_byte_order_mark_in_trusted_keys_is_named_as_such() {
    let d = tempfile::tempdir().unwrap();
    let s = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap().signer();
    let line = TrustedKeys::line_for(&s);
    // At the start of the file (an editor's "UTF-8 with BOM"), read from disk as verify reads it.
    let p = d.path().join("trusted_keys");
    std::fs::write(&p, format!("\u{feff}{line}\n")).unwrap();
    let e = TrustedKeys::load(&p).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("byte-order mark"), "{e}");
    assert!(!e.contains("does not match the public key"), "{e}");
    // Inside the file (two files joined): the key id is shown with the mark, and the mark is named.
    let e = TrustedKeys::parse(&format!("# keys\n\u{feff}{line}\n"), Path::new("tk")).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("\\u{feff}sha256:") && e.contains("byte-order mark"), "{e}");
    // Without it, the same line is accepted.
    assert_eq!(TrustedKeys::parse(&line, Path::new("tk")).unwrap().keys.len(), 1);
}
