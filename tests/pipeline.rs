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
        if x.stage == "report" {
            // REPORT.md prints each run's wall times from its own ledger; `reproduce` re-renders the
            // recorded ledger instead, where it is identical (see the reproduce test).
            continue;
        }
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

    // Every stage ran and was recorded.
    let all: Vec<&str> = hsx::pipeline::STAGES.iter().map(|(s, _)| *s).collect();
    assert_eq!(stages, all);

    // No validation or test text reaches the generator's training data.
    let run_dir = a.path().join("runs/smoke");
    let held_out: Vec<hsx::data::QaExample> = ["human_val.jsonl", "human_test.jsonl"]
        .iter()
        .flat_map(|f| hsx::data::read_jsonl_as::<hsx::data::QaExample>(&run_dir.join("prepare").join(f)).unwrap())
        .collect();
    let gen: Vec<hsx::synth::Pair> = hsx::data::read_jsonl_as(&run_dir.join("generator/generator_train.jsonl")).unwrap();
    assert!(!gen.is_empty());
    // (Generic questions such as "What may happen next ?" recur across contexts, so the check is on the
    // contexts, which identify an example, and on where each pair came from.)
    let train_ids: std::collections::HashSet<String> =
        hsx::data::read_jsonl_as::<hsx::data::QaExample>(&run_dir.join("prepare/human_train.jsonl")).unwrap().into_iter().map(|e| e.id).collect();
    for p in &gen {
        assert!(train_ids.contains(&p.seed_id), "generator pair from a non-train example {}", p.seed_id);
        for h in &held_out {
            assert!(!p.input.contains(&h.context) && !p.target.contains(&h.context), "held-out context in generator data: {}", h.id);
        }
    }

    // The filter accounting adds up.
    let syn = ea.iter().find(|e| e.stage == "synthesize").unwrap();
    let first_failing: u64 = syn.metrics["rejections_first_failing"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(syn.metrics["attempts"].as_u64().unwrap(), syn.metrics["passed"].as_u64().unwrap() + first_failing);

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
    for (x, y) in ea.iter().zip(&eb).filter(|(x, _)| x.stage == "prepare" || x.stage == "base-model" || x.stage == "contaminate") {
        assert_ne!(x.outputs, y.outputs, "stage {} ignored the seed", x.stage);
    }
}

#[test]
fn reproduce_is_identical_and_a_changed_seed_diverges_at_prepare() {
    let ws = tempfile::tempdir().unwrap();
    run(ws.path(), None);
    let repro = |out: &str, seed: Option<u64>| {
        let opts = hsx::reproduce::ReproduceOptions {
            ledger: ws.path().join("ledger/smoke.json"),
            out: out.into(),
            from: None,
            key: common::key(ws.path(), "k.pem"),
            workspace: ws.path().to_owned(),
            data_mirror: Some(common::mirror()),
            threads: None,
            seed,
        };
        hsx::reproduce::reproduce(&opts, &Quiet).unwrap_or_else(|e| panic!("{e}"))
    };
    let same = repro("runs/r1", None);
    assert!(same.ok, "{:?}", same.first_divergence);
    assert!(same.stages.iter().all(|s| s.verdict == "identical"), "{:?}", same.stages);
    assert_eq!(same.stages.len(), hsx::pipeline::STAGES.len());
    let changed = repro("runs/r2", Some(7));
    assert!(!changed.ok);
    let d = changed.first_divergence.unwrap();
    assert!(d.starts_with("stage prepare") && d.contains("human_train.jsonl") && d.contains("the re-run produced different bytes") && d.contains("first difference: JSONL line"), "{d}");
    // The reproduction ledger is itself a valid signed ledger.
    let roots = hsx::ledger::Roots { run: Some(ws.path().join("runs/r1")), data: None, workspace: Some(ws.path().to_owned()) };
    let rep = hsx::ledger::verify::verify_file(&ws.path().join("runs/r1/reproduction.json"), &roots, &Default::default()).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
}
