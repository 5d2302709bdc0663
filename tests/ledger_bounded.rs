//! Verify cannot be hung or exhausted: an artifact replaced by a FIFO, a symlink to /dev/zero or out of
//! the root, a huge sparse file, a key file that is a FIFO, a ledger with duplicate keys.
mod common;

use hsx::ledger::verify::{verify_file, VerifyOptions, VerifyReport};
use hsx::ledger::{Roots, SigningKeyFile};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a thread and fails the test if it has not returned within 20 s (it would hang forever).
fn within_20s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{what}: did not return within 20 s (hung)"))
}

fn mkfifo(p: &Path) {
    let st = std::process::Command::new("mkfifo").arg(p).status().expect("mkfifo (coreutils) must be installed");
    assert!(st.success());
}

fn verify_bg(ledger: PathBuf, roots: Roots) -> VerifyReport {
    within_20s("verify", move || verify_file(&ledger, &roots, &VerifyOptions::default()).unwrap())
}

#[test]
fn an_artifact_replaced_by_a_fifo_is_refused_without_hanging() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let target = roots.run.clone().unwrap().join("ingest/out.txt");
    std::fs::remove_file(&target).unwrap();
    mkfifo(&target);
    let f = verify_bg(ledger, roots).first_failure.expect("a FIFO passed");
    assert_eq!((f.entry, f.field.as_str()), (Some(0), "outputs[0]"), "{f}");
    assert!(f.message.contains("FIFO") && f.message.contains("ingest/out.txt"), "{f}");
}

#[test]
fn a_symlink_to_dev_zero_or_out_of_the_root_is_refused_without_hanging() {
    for target in ["/dev/zero", "../../../../outside.txt"] {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("outside.txt"), "seed 1\n").unwrap();
        let (ledger, roots) = common::fixture_ledger(d.path());
        let link = roots.run.clone().unwrap().join("ingest/out.txt");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(target, &link).unwrap();
        let f = verify_bg(ledger, roots).first_failure.expect("a symlink out of the root passed");
        assert_eq!(f.entry, Some(0), "{target}: {f}");
        assert!(f.message.contains("outside its root") && f.message.contains("refused"), "{target}: {f}");
    }
}

#[test]
fn a_huge_sparse_file_is_rejected_by_size_before_any_byte_is_hashed() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let target = roots.run.clone().unwrap().join("summary.json");
    let f = std::fs::OpenOptions::new().write(true).open(&target).unwrap();
    f.set_len(20 << 30).unwrap(); // 20 GiB, sparse
    drop(f);
    let fl = verify_bg(ledger, roots).first_failure.expect("a 20 GiB file passed");
    assert_eq!(fl.entry, Some(2), "{fl}");
    assert!(fl.message.contains("21474836480 bytes (not hashed: the size already differs)"), "{fl}");
}

#[test]
fn a_key_file_or_trusted_keys_file_that_is_a_fifo_is_refused_without_hanging() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("key.pem");
    mkfifo(&fifo);
    let p = fifo.clone();
    let e = within_20s("loading a FIFO key", move || SigningKeyFile::load(&p).map(|_| ()).unwrap_err().to_string());
    assert!(e.contains("key.pem") && e.contains("FIFO"), "{e}");
    let p = fifo.clone();
    let e = within_20s("loading FIFO trusted keys", move || {
        hsx::ledger::TrustedKeys::load(&p).map(|_| ()).unwrap_err().to_string()
    });
    assert!(e.contains("key.pem") && e.contains("not a regular file"), "{e}");
    // Through the binary: `hsx run --key <fifo>` exits 2 promptly.
    let mut child = std::process::Command::new(common::hsx_bin())
        .args(["run", "--config"])
        .arg(common::repo_path("configs/smoke.toml"))
        .arg("--ledger")
        .arg(d.path().join("l.json"))
        .arg("--key")
        .arg(&fifo)
        .current_dir(d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(2));
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("hsx run --key <fifo> hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_ledger_with_a_duplicate_key_is_not_read() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, roots) = common::fixture_ledger(d.path());
    let text = std::fs::read_to_string(&ledger).unwrap();
    // A forged first "stage" that a naive reader would show, followed by the signed one that wins in serde_json.
    let forged = text.replacen("\"stage\": \"transform\"", "\"stage\": \"forged\",\n      \"stage\": \"transform\"", 1);
    assert_ne!(forged, text);
    std::fs::write(&ledger, forged).unwrap();
    let e = verify_file(&ledger, &roots, &VerifyOptions::default()).unwrap_err().to_string();
    assert!(e.contains("duplicate key \"stage\"") && e.contains("entry 1"), "{e}");
    let e = hsx::ledger::store::read(&ledger).unwrap_err().to_string();
    assert!(e.contains("duplicate key"), "{e}");
}
