//! One writer per ledger and per run directory: a symlink alias cannot fork a locked ledger, a second
//! ledger cannot take over a run directory, temp files do not survive errors, the ledger's mode is
//! kept, and an input directory's symlinks and odd names are refused by name, never silently dropped.
mod common;

use hsx::ledger::files::record_path;
use hsx::ledger::{store, LedgerError, LedgerWriter, Locations, Root, Roots, SigningKeyFile};
use std::path::Path;

fn loc(ws: &Path) -> Locations {
    Locations::new(ws.join("runs/fx"), ws)
}

#[test]
fn a_symlink_alias_of_a_locked_ledger_is_locked_too_and_never_replaced() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let ws = d.path().join("ws");
    let alias = ws.join("alias.json");
    std::os::unix::fs::symlink(&ledger, &alias).unwrap();
    let key = || SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let held = LedgerWriter::open(&ledger, "fx", &loc(&ws), key()).unwrap();
    let e = LedgerWriter::open(&alias, "fx", &loc(&ws), key()).unwrap_err();
    assert!(matches!(e, LedgerError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("fx.json.lock"), "{e}");
    drop(held);
    let mut w = LedgerWriter::open(&alias, "fx", &loc(&ws), key()).unwrap();
    common::append(&mut w, "more").unwrap();
    drop(w);
    assert!(std::fs::symlink_metadata(&alias).unwrap().file_type().is_symlink(), "the alias was replaced by a file");
    assert_eq!(store::read(&ledger).unwrap().entries.len(), 5);
}

#[test]
fn a_second_ledger_for_the_same_run_directory_is_refused_naming_the_first() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let ws = d.path().join("ws");
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let e = LedgerWriter::open(&ws.join("ledger/seed7.json"), "fx", &loc(&ws), key).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LedgerError::RunDir { .. }), "{msg}");
    assert!(
        msg.contains("belongs to ledger") && msg.contains(&ledger.file_name().unwrap().to_string_lossy().to_string()),
        "{msg}"
    );
    assert!(!ws.join("ledger/seed7.json").exists(), "the refused ledger was created");
    // An unclaimed directory that already holds files is refused for a new ledger too.
    std::fs::create_dir_all(ws.join("runs/old/x")).unwrap();
    let key = SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap();
    let e = LedgerWriter::open(&ws.join("ledger/old.json"), "old", &Locations::new(ws.join("runs/old"), &ws), key)
        .unwrap_err();
    assert!(e.to_string().contains("already holds files"), "{e}");
}

#[test]
fn an_append_keeps_a_read_only_ledger_mode_and_errors_leave_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = common::fixture_ledger(d.path());
    let ws = d.path().join("ws");
    std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o400)).unwrap();
    let mut w = LedgerWriter::open(
        &ledger,
        "fx",
        &loc(&ws),
        SigningKeyFile::load(&common::key(d.path(), "signer.pem")).unwrap(),
    )
    .unwrap();
    common::append(&mut w, "more").unwrap();
    drop(w);
    assert_eq!(std::fs::metadata(&ledger).unwrap().permissions().mode() & 0o777, 0o400);

    // A write that fails at the rename (the target is a non-empty directory): the temp file is gone.
    let target = d.path().join("t/busy");
    std::fs::create_dir_all(target.join("x")).unwrap();
    assert!(store::write_bytes_atomic(&target, b"{}").is_err());
    let left: Vec<_> =
        std::fs::read_dir(d.path().join("t")).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("busy")], "temp files left behind: {left:?}");
}

#[test]
fn input_directories_with_a_symlink_or_a_non_utf8_name_are_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let roots = Roots { run: Some(d.path().to_owned()), ..Default::default() };
    std::fs::create_dir_all(d.path().join("in")).unwrap();
    for i in 0..7 {
        std::fs::write(d.path().join(format!("in/f{i}.txt")), "x").unwrap();
    }
    std::fs::write(d.path().join("elsewhere.txt"), "y").unwrap();
    std::os::unix::fs::symlink(d.path().join("elsewhere.txt"), d.path().join("in/link.txt")).unwrap();
    let e = record_path(&roots, Root::Run, "in").unwrap_err().to_string();
    assert!(e.contains("link.txt") && e.contains("symbolic link"), "{e}");
    std::fs::remove_file(d.path().join("in/link.txt")).unwrap();
    assert_eq!(record_path(&roots, Root::Run, "in").unwrap().len(), 7);
    let odd = d.path().join("in").join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::write(&odd, "z").unwrap();
    let e = record_path(&roots, Root::Run, "in").unwrap_err().to_string();
    assert!(e.contains("not UTF-8") && e.contains("bad"), "{e}");
}
