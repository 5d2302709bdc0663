//! Crash safety and the single-writer lock.
//!
//! A child process appends entries while the parent kills it (SIGKILL) at seeded random instants;
//! after every kill the ledger verifies and holds either the entries it had or one more.
mod common;

use hsx::ledger::verify::{verify_file, VerifyOptions};
use hsx::ledger::{
    store, Determinism, GitState, LedgerWriter, Locations, Recorder, Roots, SigningKeyFile, StageOutcome, StageSpec,
};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CHILD_ENV: &str = "HSX_TEST_CRASH_CHILD";

/// Not a test on its own: the body of the child process (does nothing unless the parent started it).
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (ledger, key) = spec.split_once('|').unwrap();
    let k = SigningKeyFile::load(Path::new(key)).unwrap();
    let dir = Path::new(ledger).parent().unwrap();
    let mut w =
        LedgerWriter::open(Path::new(ledger), "crash", &Locations::new(dir.join("runs/crash"), dir), k).unwrap();
    let mut rec = Recorder {
        writer: &mut w,
        roots: Roots::default(),
        config: json!({"x": 1}),
        master_seed: 42,
        git: GitState::NoRepository,
        env: Box::new(|| json!({})),
    };
    // Big metrics make each rewrite of the file take long enough to be interrupted mid-write.
    let blob: Vec<f64> = (0..20_000).map(|i| i as f64 * 0.5).collect();
    for i in 0..3 {
        rec.record::<std::io::Error>(
            StageSpec { stage: format!("s{i}"), params: json!({}), inputs: vec![], determinism: Determinism::Bitwise },
            |_| Ok(StageOutcome { outputs: vec![], metrics: json!({"blob": blob}) }),
        )
        .unwrap()
        .unwrap();
    }
}

fn count(ledger: &Path) -> usize {
    store::read(ledger).map(|l| l.entries.len()).unwrap_or(0)
}

#[test]
fn killed_appends_leave_old_or_new_ledger() {
    let d = tempfile::tempdir().unwrap();
    let key = common::key(d.path(), "k.pem");
    let ledger = d.path().join("ledger/crash.json");
    let me = std::env::current_exe().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut grew = 0;
    for round in 0..30 {
        let before = if ledger.exists() { count(&ledger) } else { 0 };
        let mut child = Command::new(&me)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{}", ledger.display(), key.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wide enough that appends complete on a loaded machine (each append re-verifies and writes a signed head).
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..2_000_000)));
        let _ = child.kill();
        let _ = child.wait();
        if !ledger.exists() {
            continue; // killed before the header was first written: nothing to check
        }
        let rep = verify_file(&ledger, &Roots::default(), &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: the ledger is unreadable after a kill: {e}"));
        assert!(rep.ok, "round {round}: {:?}", rep.first_failure);
        let after = rep.entries.len();
        assert!(after >= before && after <= before + 3, "round {round}: {before} -> {after}");
        grew += after - before;
    }
    assert!(grew > 0, "no append ever completed; the kill timing never let the child work");
}

#[test]
fn a_second_writer_is_kept_out_naming_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let key = common::key(d.path(), "k.pem");
    let ledger = d.path().join("l.json");
    let _held = store::acquire_lock(&ledger).unwrap();
    let loc = Locations::new(d.path().join("runs/x"), d.path());
    let e = LedgerWriter::open(&ledger, "x", &loc, SigningKeyFile::load(&key).unwrap()).unwrap_err().to_string();
    assert!(e.contains("locked") && e.contains("l.json.lock"), "{e}");

    // And through the binary, as a concurrent `hsx run` would meet it: exit 2, the lock named.
    let out = Command::new(common::hsx_bin())
        .args(["run", "--config"])
        .arg(common::repo_path("configs/smoke.toml"))
        .arg("--ledger")
        .arg(&ledger)
        .arg("--key")
        .arg(&key)
        .current_dir(d.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("locked") && stderr.contains("l.json.lock"), "{stderr}");
}
