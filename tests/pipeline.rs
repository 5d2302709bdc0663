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
        out: None,
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
    assert!(stages.starts_with(&["prepare", "preregister", "base-model"]), "{stages:?}");
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
    assert_eq!(
        bm.inputs.iter().map(|r| (r.root, r.path.as_str())).collect::<Vec<_>>(),
        vec![(Root::Run, "prepare/human_train.jsonl")]
    );
    let curve = bm.metrics["pretrain"]["loss_curve"].as_array().unwrap();
    let first = curve.first().unwrap()[1].as_f64().unwrap();
    let last = curve.last().unwrap()[1].as_f64().unwrap();
    assert!(last < first, "span-corruption loss did not fall: {first} -> {last}");

    // Every stage ran and was recorded.
    let all: Vec<&str> = hsx::pipeline::STAGES.iter().map(|(s, _)| *s).collect();
    assert_eq!(stages, all);

    // Model 0: the base model scored with no adapter, after every train stage and before the other
    // evaluations, on the same test split and metrics as A/B/C; compare has its row and differences.
    let pos = |name: &str| stages.iter().position(|s| *s == name).unwrap_or_else(|| panic!("no {name} entry"));
    assert!(pos("train-C") < pos("evaluate-0") && pos("evaluate-0") < pos("evaluate-A"), "{stages:?}");
    let e0 = &ea[pos("evaluate-0")];
    let ea_ = &ea[pos("evaluate-A")];
    assert!(e0.inputs.iter().all(|r| !r.path.starts_with("train-")), "model 0 read an adapter: {:?}", e0.inputs);
    assert_eq!((e0.metrics["model"].as_str(), e0.metrics["adapter"].is_null()), (Some("0"), true));
    assert_eq!(ea_.metrics["adapter"].as_str(), Some("train-A/adapter"));
    assert_eq!((&e0.metrics["n"], &e0.params), (&ea_.metrics["n"], &ea_.params));
    let keys = |e: &Entry| e.metrics["metrics"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(e0), keys(ea_));
    let cmp = ea.iter().find(|e| e.stage == "compare").unwrap();
    assert!(cmp.inputs.iter().any(|r| r.path == "evaluate-0/scores.jsonl"), "{:?}", cmp.inputs);
    assert_eq!(
        cmp.metrics["table"]["0"].as_object().map(|t| t.len()),
        cmp.metrics["table"]["A"].as_object().map(|t| t.len())
    );
    let labels: Vec<&str> =
        cmp.metrics["differences"].as_array().unwrap().iter().map(|d| d["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["A−0", "B−0", "C−0"]);
    let report = std::fs::read_to_string(a.path().join("runs/smoke-report/REPORT.md")).unwrap();
    assert!(report.lines().any(|l| l.starts_with("| model 0 (")), "REPORT.md has no model 0 row");

    // No validation or test text reaches the generator's training data.
    let run_dir = a.path().join("runs/smoke");
    let held_out: Vec<hsx::data::QaExample> = ["human_val.jsonl", "human_test.jsonl"]
        .iter()
        .flat_map(|f| hsx::data::read_jsonl_as::<hsx::data::QaExample>(&run_dir.join("prepare").join(f)).unwrap())
        .collect();
    let gen: Vec<hsx::synth::Pair> =
        hsx::data::read_jsonl_as(&run_dir.join("generator/generator_train.jsonl")).unwrap();
    assert!(!gen.is_empty());
    // (Generic questions such as "What may happen next ?" recur across contexts, so the check is on the
    // contexts, which identify an example, and on where each pair came from.)
    let train_ids: std::collections::HashSet<String> =
        hsx::data::read_jsonl_as::<hsx::data::QaExample>(&run_dir.join("prepare/human_train.jsonl"))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
    for p in &gen {
        assert!(train_ids.contains(&p.seed_id), "generator pair from a non-train example {}", p.seed_id);
        for h in &held_out {
            assert!(
                !p.input.contains(&h.context) && !p.target.contains(&h.context),
                "held-out context in generator data: {}",
                h.id
            );
        }
    }

    // The filter accounting adds up.
    let syn = ea.iter().find(|e| e.stage == "synthesize").unwrap();
    let first_failing: u64 =
        syn.metrics["rejections_first_failing"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(syn.metrics["attempts"].as_u64().unwrap(), syn.metrics["passed"].as_u64().unwrap() + first_failing);

    // Resume: nothing re-runs, nothing is appended.
    let again = run(a.path(), None);
    assert_eq!(again.len(), ea.len());

    let roots = hsx::ledger::Roots {
        run: Some(a.path().join("runs/smoke")),
        data: Some(common::mirror().join("cosmosqa")),
        workspace: Some(a.path().to_owned()),
    };
    let rep =
        hsx::ledger::verify::verify_file(&a.path().join("ledger/smoke.json"), &roots, &Default::default()).unwrap();
    assert!(rep.ok && rep.missing_artifacts == 0, "{:?}", rep.first_failure);

    // Every entry of a fresh run is RFC 8785 input: an implementation nobody here wrote (PyPI rfc8785,
    // securesystemslib) re-derives each one's bytes, hash and signature (tests/ledger_interop.rs).
    let re = common::interop::recheck_ledger(&a.path().join("ledger/smoke.json"));
    assert_eq!(re.entries.len(), ea.len());
    for (e, py) in ea.iter().zip(&re.entries) {
        assert_eq!(py["status"], "canonicalised", "entry {} ({}): {py}", e.seq, e.stage);
        assert_eq!((&py["hash_matches"], &py["signature"]), (&true.into(), &"valid".into()), "entry {}", e.seq);
    }
    // The training recipes record their u64 seed as a decimal string.
    let tr = ea.iter().find(|e| e.stage == "train-A").unwrap();
    assert_eq!(tr.metrics["recipe"]["seed"], tr.seeds.stage.to_string(), "{}", tr.metrics["recipe"]);
}

#[test]
fn a_different_seed_changes_every_stage() {
    let a = tempfile::tempdir().unwrap();
    let ea = run(a.path(), None);
    let b = tempfile::tempdir().unwrap();
    let cfg =
        std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap().replace("seed = 42", "seed = 43");
    std::fs::write(b.path().join("s.toml"), cfg).unwrap();
    let opts = RunOptions {
        config_path: b.path().join("s.toml"),
        ledger_path: b.path().join("l.json"),
        key_path: common::key(b.path(), "k.pem"),
        workspace: b.path().to_owned(),
        data_mirror: Some(common::mirror()),
        only: None,
        from: None,
        out: None,
    };
    pipeline::run(&opts, &Quiet).unwrap();
    let eb = hsx::ledger::store::read(&b.path().join("l.json")).unwrap().entries;
    for (x, y) in
        ea.iter().zip(&eb).filter(|(x, _)| x.stage == "prepare" || x.stage == "base-model" || x.stage == "contaminate")
    {
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
    // The run's own report in the workspace is never rewritten by a reproduction.
    let mtime = || std::fs::metadata(ws.path().join("runs/smoke-report/REPORT.md")).and_then(|m| m.modified()).unwrap();
    let before = mtime();
    // An absolute --out (what a cluster user passes) works and leaves no lock file behind.
    let abs_out = ws.path().join("scratch/r1");
    let same = repro(abs_out.to_str().unwrap(), None);
    assert!(same.ok, "{:?}", same.first_divergence);
    assert!(same.stages.iter().all(|s| s.verdict == "identical"), "{:?}", same.stages);
    assert_eq!(same.stages.len(), hsx::pipeline::STAGES.len());
    let leftovers: Vec<_> = std::fs::read_dir(&abs_out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "lock files left behind: {leftovers:?}");
    assert!(
        abs_out.join("runs/smoke-report/REPORT.md").is_file(),
        "the reproduction's report is not in its own directory"
    );
    let rep =
        hsx::audit::verify(&abs_out.join("reproduction.json"), Some(&common::mirror()), &Default::default()).unwrap();
    assert!(rep.ok, "{:?}", rep.first_failure);
    assert!(
        rep.missing_artifacts == 0 && rep.checked_artifacts > 0,
        "{} checked, {} missing",
        rep.checked_artifacts,
        rep.missing_artifacts
    );
    // Relative forms of --out: `./x`, `x/` and `../x` (from a workspace one level down).
    for out in ["./runs/r-dot", "runs/r-slash/"] {
        let r = repro(out, None);
        assert!(r.ok, "--out {out}: {:?}", r.first_divergence);
        assert!(ws.path().join(out).join("reproduction.json").is_file(), "--out {out}");
    }
    assert_eq!(mtime(), before, "reproduce rewrote the workspace report");
    let changed = repro("runs/r2", Some(7));
    assert!(!changed.ok);
    let d = changed.first_divergence.unwrap();
    assert!(
        d.starts_with("stage prepare") && d.contains("human_train.jsonl") && d.contains("first differing line"),
        "{d}"
    );
}

#[test]
fn self_contained_run_resumes_and_verifies_from_its_own_directory() {
    let ws = tempfile::tempdir().unwrap();
    let out = ws.path().join("runs/local/smoke");
    let opts = RunOptions {
        config_path: common::repo_path("configs/smoke.toml"),
        ledger_path: out.join(pipeline::SELF_CONTAINED_LEDGER),
        key_path: common::key(ws.path(), "k.pem"),
        workspace: ws.path().to_owned(),
        data_mirror: Some(common::mirror()),
        only: None,
        from: None,
        out: Some(out.clone()),
    };
    let first = pipeline::run(&opts, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    assert!(first.stages.iter().all(|s| s.status == pipeline::Status::Ran), "{:?}", first.stages);
    // Everything lives in the one directory; nothing is written to the workspace's report or ledger/.
    assert!(out.join("runs/smoke-report/REPORT.md").is_file(), "the report is not inside the run directory");
    assert!(!ws.path().join("runs/smoke-report").exists() && !ws.path().join("ledger").exists());
    let ledger = hsx::ledger::store::read(&opts.ledger_path).unwrap();
    assert_eq!(ledger.header.run_dir, ".");
    // A second run resumes: every stage is skipped, no entry is added, and no lock is left.
    let second = pipeline::run(&opts, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    assert!(second.stages.iter().all(|s| s.status == pipeline::Status::Skipped), "{:?}", second.stages);
    assert_eq!(hsx::ledger::store::read(&opts.ledger_path).unwrap().entries.len(), ledger.entries.len());
    assert!(!out.join("ledger.json.lock").exists() && !out.join(".hsx-run.lock").exists(), "lock file left behind");
    // The same directory cannot be resumed in the other layout by mistake.
    let other = RunOptions { out: None, ..opts.clone() };
    let err = pipeline::run(&other, &Quiet).unwrap_err().to_string();
    assert!(err.contains("run directory"), "{err}");
    // Verified through the binary from another directory, with every artifact found and checked.
    let o = std::process::Command::new(common::hsx_bin())
        .args(["verify", "--require-artifacts", "--ledger"])
        .arg(&opts.ledger_path)
        .current_dir(ws.path())
        .env("HSX_DATA_MIRROR", common::mirror())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("(0 missing"), "{stdout}");
}

#[test]
fn resuming_keys_on_each_stages_own_parameters_not_the_whole_config() {
    let ws = tempfile::tempdir().unwrap();
    run(ws.path(), Some("prepare"));
    let entries = hsx::ledger::store::read(&ws.path().join("ledger/smoke.json")).unwrap().entries;
    let text = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    let base = hsx::config::Config::from_toml_str(&text, Path::new("smoke.toml")).unwrap();
    let resumes = |edit: &dyn Fn(&mut hsx::config::Config)| {
        let mut cfg = base.clone();
        edit(&mut cfg);
        let run_dir = ws.path().join(pipeline::run_dir_rel(&cfg));
        let setup = pipeline::Setup::place(cfg, ws.path(), Some(&common::mirror()), run_dir).unwrap();
        let stage = hsx::stages::Stage::Prepare;
        let spec = hsx::stages::spec(stage.into(), &setup.cfg);
        (pipeline::resumable(&entries, stage, &spec, &setup).is_some(), setup.cfg.sha256() != base.sha256())
    };
    assert_eq!(resumes(&|_| {}), (true, false));
    // Settings prepare does not read change the config's hash but do not re-run it ...
    assert_eq!(resumes(&|c| c.experiment.report_dir = "elsewhere/report".into()), (true, true));
    assert_eq!(resumes(&|c| c.eval.bootstrap_resamples += 1), (true, true));
    // ... while its own parameters and the master seed do.
    assert_eq!(resumes(&|c| c.split.test += 1), (false, true));
    assert_eq!(resumes(&|c| c.experiment.seed += 1), (false, true));

    // The code part of the key is the stage's own code identity, recorded in its entry: an entry made by
    // other code (here: another recorded identity, or none) re-runs.
    let stage = hsx::stages::Stage::Prepare;
    assert_eq!(entries[0].env["stage_code_sha256"], hsx::stages::code::identity(stage).sha256.as_str());
    let setup = pipeline::Setup::place(
        base.clone(),
        ws.path(),
        Some(&common::mirror()),
        ws.path().join(pipeline::run_dir_rel(&base)),
    )
    .unwrap();
    let spec = hsx::stages::spec(stage.into(), &setup.cfg);
    let mut other = entries.clone();
    other[0].env["stage_code_sha256"] = "0".repeat(64).into();
    assert!(pipeline::resumable(&other, stage, &spec, &setup).is_none());
    other[0].env.as_object_mut().unwrap().remove("stage_code_sha256");
    assert!(pipeline::resumable(&other, stage, &spec, &setup).is_none());
    assert!(pipeline::resumable(&entries, stage, &spec, &setup).is_some());
}
