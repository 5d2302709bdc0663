//! The pipeline on the smoke profile: stages recorded, byte-identical reruns, resume, verify.
mod common;

use hsx::ledger::{Entry, Root};
use hsx::pipeline::{self, Quiet, RunOptions};
use std::path::Path;

fn run(ws: &Path, only: Option<&str>) -> Vec<Entry> {
    let opts = RunOptions {
        config_path: common::repo_path("configs/smoke.toml"),
        ledger_path: ws.join("ledger/smoke.json"),
        key_path: common::key(ws, "k.pem"),
        workspace: ws.to_owned(),
        data_mirror: Some(common::mirror()),
        only: only.map(str::to_owned),
        from: None,
    };
    pipeline::run(&opts, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    hsx::ledger::store::read(&ws.join("ledger/smoke.json")).unwrap().entries
}

#[test]
fn smoke_stages_rerun_byte_identical_and_verify() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = run(a.path(), None);
    let eb = run(b.path(), None);
    let stages: Vec<&str> = ea.iter().map(|e| e.stage.as_str()).collect();
    assert!(stages.starts_with(&["prepare", "base-model"]), "{stages:?}");
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x.stage, y.stage);
        assert_eq!(x.outputs, y.outputs, "stage {} is not byte-identical across runs", x.stage);
        assert_eq!(x.seeds, y.seeds);
    }

    // The base model learns from the train split only.
    let bm = ea.iter().find(|e| e.stage == "base-model").unwrap();
    assert_eq!(bm.inputs.iter().map(|r| (r.root, r.path.as_str())).collect::<Vec<_>>(), vec![(Root::Run, "prepare/human_train.jsonl")]);
    let curve = bm.metrics["pretrain"]["loss_curve"].as_array().unwrap();
    let first = curve.first().unwrap()[1].as_f64().unwrap();
    let last = curve.last().unwrap()[1].as_f64().unwrap();
    assert!(last < first, "span-corruption loss did not fall: {first} -> {last}");

    // Resume: nothing re-runs, nothing is appended.
    let again = run(a.path(), None);
    assert_eq!(again.len(), ea.len());

    let roots = hsx::ledger::Roots {
        run: Some(a.path().join("runs/smoke")),
        data: Some(common::mirror().join("cosmosqa")),
        workspace: Some(a.path().to_owned()),
    };
    let rep = hsx::ledger::verify::verify_file(&a.path().join("ledger/smoke.json"), &roots, &Default::default()).unwrap();
    assert!(rep.ok && rep.missing_artifacts == 0, "{:?}", rep.first_failure);
}

#[test]
fn a_different_seed_changes_every_stage() {
    let a = tempfile::tempdir().unwrap();
    let ea = run(a.path(), None);
    let b = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap().replace("seed = 42", "seed = 43");
    std::fs::write(b.path().join("s.toml"), cfg).unwrap();
    let opts = RunOptions {
        config_path: b.path().join("s.toml"),
        ledger_path: b.path().join("l.json"),
        key_path: common::key(b.path(), "k.pem"),
        workspace: b.path().to_owned(),
        data_mirror: Some(common::mirror()),
        only: None,
        from: None,
    };
    pipeline::run(&opts, &Quiet).unwrap();
    let eb = hsx::ledger::store::read(&b.path().join("l.json")).unwrap().entries;
    for (x, y) in ea.iter().zip(&eb) {
        assert_ne!(x.outputs, y.outputs, "stage {} ignored the seed", x.stage);
    }
}
