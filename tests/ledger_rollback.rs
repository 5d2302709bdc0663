//! Rollback and truncation: entries cut off the end, an empty or untrusted ledger, a report citing a
//! head the ledger no longer has, `--expect-head`, and verify run from another directory.
mod common;

use hsx::ledger::head::{citation, head_path_for, SignedHead};
use hsx::ledger::verify::{verify_at, VerifyOptions};
use hsx::ledger::{
    Determinism, GitState, LedgerWriter, Locations, Recorder, Root, SigningKeyFile, StageOutcome, StageSpec,
    TrustedKeys,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn trusted(d: &Path) -> TrustedKeys {
    let k = SigningKeyFile::load(&common::key(d, "signer.pem")).unwrap();
    TrustedKeys::parse(&TrustedKeys::line_for(&k.signer()), Path::new("trusted_keys")).unwrap()
}

#[test]
fn dropping_the_last_entry_all_but_one_or_all_entries_is_detected_by_the_signed_head() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let full = read(&ledger);
    let opts = VerifyOptions { trusted: Some(trusted(d.path())), ..Default::default() };
    assert!(verify_at(&ledger, None, &opts).unwrap().ok);
    for keep in [3usize, 1, 0] {
        let mut m = full.clone();
        m["entries"].as_array_mut().unwrap().truncate(keep);
        write(&ledger, &m);
        let rep = verify_at(&ledger, None, &opts).unwrap();
        let f = rep.first_failure.expect("a cut ledger must fail");
        assert_eq!(f.field, "head", "keep {keep}: {f}");
        assert!(f.message.contains("cut off") && f.message.contains("4 entries"), "keep {keep}: {f}");
    }
    // Deleting the head file too: refused, naming the missing head.
    std::fs::remove_file(head_path_for(&ledger)).unwrap();
    let f = verify_at(&ledger, None, &opts).unwrap().first_failure.unwrap();
    assert!(f.field == "head" && f.message.contains("no signed head"), "{f}");
}

#[test]
fn a_rollback_with_an_old_signed_head_is_caught_by_expect_head_and_the_cli_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let full = read(&ledger);
    let head_hash = full["entries"][3]["hash"].as_str().unwrap().to_owned();
    // The attacker kept the head file from when the ledger had two entries.
    let mut m = full.clone();
    m["entries"].as_array_mut().unwrap().truncate(2);
    write(&ledger, &m);
    let typed: hsx::ledger::Ledger = serde_json::from_value(m).unwrap();
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    SignedHead::new(&typed, &key).write(&head_path_for(&ledger)).unwrap();
    assert!(verify_at(&ledger, None, &VerifyOptions::default()).unwrap().ok, "internally consistent");
    let pinned = VerifyOptions { expect_head: Some(head_hash.clone()), ..Default::default() };
    let f = verify_at(&ledger, None, &pinned).unwrap().first_failure.unwrap();
    assert!(f.field == "head" && f.message.contains(&head_hash), "{f}");

    let out = Command::new(common::hsx_bin())
        .args(["verify", "--ledger"])
        .arg(&ledger)
        .args(["--expect-head", &head_hash])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("not in this ledger"), "{stdout}");
    // A pinned earlier head of a ledger that grew is fine.
    write(&ledger, &full);
    std::fs::remove_file(head_path_for(&ledger)).unwrap();
    let typed: hsx::ledger::Ledger = serde_json::from_value(full.clone()).unwrap();
    SignedHead::new(&typed, &key).write(&head_path_for(&ledger)).unwrap();
    let early =
        VerifyOptions { expect_head: Some(full["entries"][1]["hash"].as_str().unwrap().into()), ..Default::default() };
    assert!(verify_at(&ledger, None, &early).unwrap().ok);
}

#[test]
fn an_empty_ledger_or_an_untrusted_or_identity_key_header_fails_trusted_verification() {
    let d = tempfile::tempdir().unwrap();
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let ledger = d.path().join("ws/ledger/empty.json");
    drop(
        LedgerWriter::open(&ledger, "e", &Locations::new(d.path().join("ws/runs/e"), d.path().join("ws")), key)
            .unwrap(),
    );
    let opts = VerifyOptions { trusted: Some(trusted(d.path())), ..Default::default() };
    let f = verify_at(&ledger, None, &opts).unwrap().first_failure.expect("an empty ledger attests nothing");
    assert!(f.field == "entries" && f.message.contains("no entries"), "{f}");

    // Signed by a key that is not trusted: fails at the header, even with no entries to check.
    let other = SigningKeyFile::load(&common::key(d.path(), "other.pem")).unwrap();
    let tk = TrustedKeys::parse(&TrustedKeys::line_for(&other.signer()), Path::new("tk")).unwrap();
    let f = verify_at(&ledger, None, &VerifyOptions { trusted: Some(tk), ..Default::default() })
        .unwrap()
        .first_failure
        .unwrap();
    assert!(f.field == "header.signer" && f.message.contains("not in the trusted keys"), "{f}");

    // The identity point (a small-order key nobody holds the secret of) as the signer.
    let mut m = read(&ledger);
    let mut id = [0u8; 32];
    id[0] = 1;
    m["header"]["signer"]["public_key"] = Value::String(hex::encode(id));
    m["header"]["signer"]["key_id"] = Value::String(format!("sha256:{}", hsx::canonical::sha256_hex(&id)));
    write(&ledger, &m);
    let f = verify_at(&ledger, None, &VerifyOptions::default()).unwrap().first_failure.unwrap();
    assert!(f.field == "header.signer.public_key" && f.message.contains("weak"), "{f}");
}

/// A small ledger whose config names a report directory, with a REPORT.md citing its head.
fn ledger_with_report(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ws = d.join("ws");
    let run = ws.join("runs/r");
    let key = SigningKeyFile::load(&common::key(d, "signer.pem")).unwrap();
    let ledger = ws.join("ledger/r.json");
    let mut w = LedgerWriter::open(&ledger, "r", &Locations::new(&run, &ws), key).unwrap();
    let roots = hsx::ledger::Roots { run: Some(run.clone()), data: None, workspace: Some(ws.clone()) };
    let mut rec = Recorder {
        writer: &mut w,
        roots,
        config: json!({"experiment": {"id": "r", "report_dir": "report"}}),
        master_seed: 1,
        git: GitState::NoRepository,
        env: Box::new(|| json!({})),
    };
    for s in ["a", "b", "c"] {
        let run = run.clone();
        rec.record::<std::io::Error>(
            StageSpec { stage: s.into(), params: json!({}), inputs: vec![], determinism: Determinism::Bitwise },
            move |_| {
                std::fs::write(run.join(format!("{s}.txt")), s)?;
                Ok(StageOutcome { outputs: vec![(Root::Run, format!("{s}.txt"))], metrics: json!({"score": 0.0006}) })
            },
        )
        .unwrap()
        .unwrap();
    }
    drop(rec);
    let head = w.ledger().head().unwrap();
    drop(w);
    let report = ws.join("report/REPORT.md");
    std::fs::create_dir_all(report.parent().unwrap()).unwrap();
    std::fs::write(&report, format!("# Report\n\n| A | 0.0006 |\n\nProvenance: {}\n", citation(&head))).unwrap();
    (ledger, report)
}

#[test]
fn a_cut_ledger_with_an_edited_report_fails_because_the_report_cites_a_head_it_no_longer_has() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, report) = ledger_with_report(d.path());
    assert!(verify_at(&ledger, None, &VerifyOptions::default()).unwrap().ok);
    // Cut the last entry, refresh the head file as an attacker holding an old copy could, edit the report.
    let mut m = read(&ledger);
    m["entries"].as_array_mut().unwrap().pop();
    write(&ledger, &m);
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    SignedHead::new(&serde_json::from_value(m).unwrap(), &key).write(&head_path_for(&ledger)).unwrap();
    let text = std::fs::read_to_string(&report).unwrap().replace("A | 0.0006", "A | 0.4206");
    std::fs::write(&report, text).unwrap();
    let f = verify_at(&ledger, None, &VerifyOptions::default()).unwrap().first_failure.expect("rollback passed");
    assert!(f.field == "head" && f.message.contains("report/REPORT.md cites ledger head seq 2"), "{f}");
}

#[test]
fn verify_from_another_directory_resolves_roots_from_the_ledger_and_counts_what_it_checked() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(common::hsx_bin())
        .args(["--json", "verify", "--ledger"])
        .arg(&ledger)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["missing_artifacts"], 0, "{rep}");
    // 4 entries: 1+1 (ingest), 1+2 (transform), 1+1 (summarize), 1+0 (check) = 8 records, none superseded.
    assert_eq!(rep["recorded_artifacts"], 8, "{rep}");
    assert_eq!(rep["checked_artifacts"], 8, "{rep}");
    assert_eq!(rep["head"]["seq"], 3, "{rep}");
    let text = Command::new(common::hsx_bin())
        .args(["verify", "--ledger"])
        .arg(&ledger)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("8 of 8 recorded files checked"), "{s}");
}

#[test]
fn a_report_citing_two_heads_fails_even_when_both_are_entries_of_this_ledger() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, report) = ledger_with_report(d.path());
    assert!(verify_at(&ledger, None, &VerifyOptions::default()).unwrap().ok);
    let m = read(&ledger);
    let first = hsx::ledger::Head { seq: 0, hash: m["entries"][0]["hash"].as_str().unwrap().to_owned() };
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::write(&report, format!("{text}\nCorrected: {}\n", citation(&first))).unwrap();
    let f = verify_at(&ledger, None, &VerifyOptions::default()).unwrap().first_failure.expect("two citations passed");
    assert!(f.field == "head" && f.message.contains("report/REPORT.md cites 2 ledger heads"), "{f}");
}
