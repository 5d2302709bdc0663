//! Ledger fragments (the Slurm executor's many writers, one ledger): jobs write signed entries into
//! their own files, the driver joins them in plan order, and a missing, altered, foreign or misnamed
//! fragment is refused at the join and named; after the join, `hsx verify --require-artifacts` names a
//! fragment file that went missing or changed, and accepts entries that ran at the same time.
mod common;

use hsx::ledger::fragment::{fragment_rel, join_into, read_checked, FragmentError, FragmentWriter};
use hsx::ledger::verify::VerifyOptions;
use hsx::ledger::{
    Determinism, GitState, LedgerError, LedgerWriter, Locations, Recorder, Root, Roots, SigningKeyFile, StageOutcome,
    StageSpec,
};
use serde_json::json;
use std::path::{Path, PathBuf};

struct Fx {
    ledger: PathBuf,
    run: PathBuf,
    roots: Roots,
    key: PathBuf,
}

fn setup(dir: &Path) -> (Fx, LedgerWriter) {
    let ws = dir.join("ws");
    let run = ws.join("runs/fx");
    std::fs::create_dir_all(&run).unwrap();
    let key = common::key(dir, "signer.pem");
    let ledger = ws.join("ledger/fx.json");
    let w = LedgerWriter::open(&ledger, "fx", &Locations::new(&run, &ws), SigningKeyFile::load(&key).unwrap()).unwrap();
    let roots = Roots { run: Some(run.clone()), data: None, workspace: Some(ws) };
    (Fx { ledger, run, roots, key }, w)
}

/// What one job does: runs stage `name` (reading `reads` under the run directory, writing
/// `<name>/out.txt`) and writes its fragment, bound to the ledger's header.
fn job(fx: &Fx, header: &hsx::ledger::Header, name: &str, reads: &[&str], key: &Path) -> Result<(), LedgerError> {
    let mut fw = FragmentWriter::new(&fx.run, name, header.clone(), SigningKeyFile::load(key).unwrap())?;
    let mut rec = Recorder {
        writer: &mut fw,
        roots: fx.roots.clone(),
        config: json!({"experiment": {"id": "fx", "seed": 42}}),
        master_seed: 42,
        git: GitState::NoRepository,
        env: Box::new(|| json!({"os": "test"})),
    };
    let run = fx.run.clone();
    let spec = StageSpec {
        stage: name.into(),
        params: json!({}),
        inputs: reads.iter().map(|r| (Root::Run, r.to_string())).collect(),
        determinism: Determinism::Bitwise,
    };
    rec.record::<std::io::Error>(spec, |_| {
        std::fs::create_dir_all(run.join(name))?;
        std::fs::write(run.join(name).join("out.txt"), format!("{name}\n"))?;
        Ok(StageOutcome { outputs: vec![(Root::Run, format!("{name}/out.txt"))], metrics: json!({}) })
    })?
    .map(|_| ())
    .map_err(|e| LedgerError::Io { path: run.clone(), source: e })
}

fn verify(fx: &Fx) -> hsx::ledger::verify::VerifyReport {
    let opts = VerifyOptions { trusted: None, require_artifacts: true, expect_head: None, structure_only: false };
    hsx::ledger::verify::verify_file(&fx.ledger, &fx.roots, &opts).unwrap()
}

#[test]
fn parallel_jobs_join_in_plan_order_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (fx, mut w) = setup(dir.path());
    let header = w.ledger().header.clone();
    job(&fx, &header, "prepare", &[], &fx.key).unwrap();
    join_into(&mut w, &fx.run, "prepare").unwrap();
    // Two jobs that both read prepare's output, run "at the same time": the second starts before the
    // first finishes. Joined in plan order, whichever finished first.
    job(&fx, &header, "train-B", &["prepare/out.txt"], &fx.key).unwrap();
    job(&fx, &header, "train-A", &["prepare/out.txt"], &fx.key).unwrap();
    join_into(&mut w, &fx.run, "train-A").unwrap();
    join_into(&mut w, &fx.run, "train-B").unwrap();
    let stages: Vec<&str> = w.ledger().entries.iter().map(|e| e.stage.as_str()).collect();
    assert_eq!(stages, ["prepare", "train-A", "train-B"]);
    // train-A started after train-B finished here; the ledger order is the plan's, and verify accepts
    // entries of one wave whose times overlap, because each started after what it read was written.
    let e = &w.ledger().entries;
    assert!(e[1].started >= e[2].finished, "the fixture's second job ran after the first");
    assert_eq!(e[1].env["fragment"]["path"], json!("slurm/fragments/train-A.json"));
    drop(w);
    let r = verify(&fx);
    assert!(r.ok, "{:?}", r.first_failure);
    assert_eq!(r.checked_artifacts, r.recorded_artifacts, "every fragment file is checked on disk");

    // A fragment file altered after the join: named by verify.
    let f = fx.run.join("slurm/fragments/train-B.json");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replacen("train-B", "train-b", 1)).unwrap();
    let r = verify(&fx);
    let fail = r.first_failure.expect("an altered fragment fails");
    assert_eq!(fail.entry, Some(2));
    assert!(
        fail.message.contains("slurm/fragments/train-B.json") && fail.message.contains("tampered"),
        "{}",
        fail.message
    );
    // ... and one that went missing.
    std::fs::write(&f, text).unwrap();
    std::fs::remove_file(fx.run.join("slurm/fragments/train-A.json")).unwrap();
    let r = verify(&fx);
    let fail = r.first_failure.expect("a missing fragment fails under --require-artifacts");
    assert!(fail.message.contains("slurm/fragments/train-A.json"), "{}", fail.message);
}

#[test]
fn a_bad_fragment_is_refused_at_the_join_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (fx, mut w) = setup(dir.path());
    let header = w.ledger().header.clone();

    // Missing: the job ended without writing it.
    match join_into(&mut w, &fx.run, "prepare") {
        Err(LedgerError::Fragment(FragmentError::Missing { path, instance })) => {
            assert!(path.ends_with("slurm/fragments/prepare.json") && instance == "prepare");
        }
        other => panic!("{other:?}"),
    }

    // Altered: a field of the entry edited after signing.
    job(&fx, &header, "prepare", &[], &fx.key).unwrap();
    let f = fx.run.join(fragment_rel("prepare"));
    let good = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, good.replace("\"os\": \"test\"", "\"os\": \"edited\"")).unwrap();
    let e = read_checked(&fx.run, "prepare", &header).unwrap_err().to_string();
    assert!(e.contains("prepare.json") && e.contains("entry.hash"), "{e}");

    // Named for another instance: a fragment copied over another's.
    std::fs::write(&f, &good).unwrap();
    std::fs::create_dir_all(fx.run.join("slurm/fragments")).unwrap();
    std::fs::copy(&f, fx.run.join(fragment_rel("train-A"))).unwrap();
    let e = read_checked(&fx.run, "train-A", &header).unwrap_err().to_string();
    assert!(e.contains("train-A.json") && e.contains("instance"), "{e}");

    // Signed by another key: refused (a job must sign with the ledger's signer).
    let other = common::key(dir.path(), "other.pem");
    assert!(
        job(&fx, &header, "prepare", &[], &other).is_err(),
        "a fragment writer refuses a key that is not the ledger's signer"
    );

    // Written for another ledger (another header): refused.
    let dir2 = tempfile::tempdir().unwrap();
    let (fx2, w2) = setup(dir2.path());
    let header2 = w2.ledger().header.clone();
    let k2 = fx2.key.clone();
    let fx_other = Fx { ledger: fx.ledger.clone(), run: fx.run.clone(), roots: fx.roots.clone(), key: k2.clone() };
    job(&fx_other, &header2, "prepare", &[], &k2).unwrap();
    let e = read_checked(&fx.run, "prepare", &header).unwrap_err().to_string();
    assert!(e.contains("prepare.json") && e.contains("another ledger"), "{e}");

    // Nothing was appended by any refusal.
    assert!(w.ledger().entries.is_empty());
    std::fs::write(&f, &good).unwrap();
    join_into(&mut w, &fx.run, "prepare").unwrap();
    assert_eq!(w.ledger().entries.len(), 1);
}
