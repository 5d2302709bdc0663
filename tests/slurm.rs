//! The Slurm executor on a real Slurm: the smoke profile with two replicates through
//! `hsx run --executor slurm`, a job cancelled mid-run, resume, verify, the jobs' record, and the same
//! per-stage output hashes as the local executor.
//!
//! Needs a running cluster: `make slurm-check` installs slurm-wlm and munge when missing, starts a
//! one-node cluster on loopback (scripts/slurm-local.sh), runs this test and stops the cluster. Ignored
//! by `make test` for that reason, never skipped inside: without a cluster it fails and says so.
mod common;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn slurm_conf() -> PathBuf {
    let conf = std::env::var_os("SLURM_CONF").map(PathBuf::from).unwrap_or_else(|| {
        panic!("SLURM_CONF is not set: this test needs a Slurm cluster; run `make slurm-check` (it starts a one-node cluster with scripts/slurm-local.sh)")
    });
    let ok = Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "sinfo fails with SLURM_CONF={}: start the cluster with `scripts/slurm-local.sh start DIR`, or run `make slurm-check`", conf.display());
    conf
}

fn hsx(ws: &Path, key: &Path, args: &[&str]) -> Output {
    Command::new(common::hsx_bin())
        .args(args)
        .current_dir(ws)
        .env("HSX_SIGNING_KEY", key)
        .env("HSX_DATA_MIRROR", common::mirror())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn entries(ledger: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(ledger).unwrap()).unwrap();
    v["entries"].as_array().unwrap().clone()
}

/// `JobId=… Name=… JobState=… StartTime=… EndTime=…` lines of the jobcomp/filetxt log, by job id.
fn jobcomp(conf: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let conf_text = std::fs::read_to_string(conf).unwrap();
    let loc = conf_text
        .lines()
        .find_map(|l| l.strip_prefix("JobCompLoc="))
        .expect("slurm.conf sets JobCompLoc (jobcomp/filetxt)");
    let log = std::fs::read_to_string(loc).unwrap_or_default();
    log.lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<BTreeMap<_, _>>()
        })
        .filter_map(|m| m.get("JobId").cloned().map(|id| (id, m)))
        .collect()
}

#[test]
#[ignore = "needs a Slurm cluster: make slurm-check"]
fn smoke_with_two_replicates_runs_as_slurm_jobs_resumes_after_a_cancelled_job_and_matches_the_local_run() {
    let conf = slurm_conf();
    let dir = tempfile::tempdir().unwrap();
    // The workspace is the temporary directory: nothing of an earlier run in the checkout is seen.
    let ws = dir.path().to_owned();
    let key = dir.path().join("key.pem");
    assert!(hsx(&ws, &key, &["-q", "keygen"]).status.success());
    // The smoke profile with two training seeds, one thread per stage and one CPU per job, so that
    // the two CPUs of a one-node test cluster run two jobs at a time.
    let smoke = std::fs::read_to_string(common::repo_path("configs/smoke.toml")).unwrap();
    let cfg = smoke.replacen("seed = 42\n", "seed = 42\nreplicates = [42, 43]\n", 1).replacen(
        "threads = 2\n",
        "threads = 1\n",
        1,
    ) + "\n[slurm]\npoll_seconds = 0.5\n[slurm.default]\ncpus = 1\n";
    assert!(cfg.contains("replicates = [42, 43]") && cfg.contains("threads = 1"), "configs/smoke.toml changed shape");
    let config = dir.path().join("smoke-replicates.toml");
    std::fs::write(&config, cfg).unwrap();
    let out = dir.path().join("slurm-run");
    let (config_s, out_s) = (config.to_str().unwrap(), out.to_str().unwrap());
    let ledger = out.join("ledger.json");

    // 1. The first attempt: synthesis (the longest shared stage) is cancelled while it runs.
    let driver = Command::new(common::hsx_bin())
        .args(["run", "--executor", "slurm", "--config", config_s, "--out", out_s])
        .current_dir(&ws)
        .env("HSX_SIGNING_KEY", &key)
        .env("HSX_DATA_MIRROR", common::mirror())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = "hsx:smoke:synthesize";
    let t0 = std::time::Instant::now();
    let cancelled = loop {
        let q = Command::new("squeue").args(["-h", "-n", name, "-o", "%i %T"]).output().unwrap();
        let line = String::from_utf8_lossy(&q.stdout).trim().to_owned();
        if let Some(id) = line.strip_suffix(" RUNNING") {
            std::thread::sleep(std::time::Duration::from_secs(2));
            assert!(Command::new("scancel").arg(id).status().unwrap().success());
            break id.to_owned();
        }
        assert!(t0.elapsed().as_secs() < 600, "synthesize never ran as a Slurm job (squeue: {line:?})");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let first = driver.wait_with_output().unwrap();
    let said = text(&first);
    assert!(!first.status.success(), "the run must fail when a job is cancelled:\n{said}");
    assert!(said.contains(&format!("Slurm job {cancelled} (synthesize) ended CANCELLED")), "{said}");
    assert!(
        said.contains("slurm/logs/synthesize.") && said.contains("train-C"),
        "the failure names the log and the stopped dependents:\n{said}"
    );
    // What completed is in the ledger, and it verifies; nothing downstream of synthesis is.
    let partial: Vec<String> = entries(&ledger).iter().map(|e| e["stage"].as_str().unwrap().to_owned()).collect();
    for s in ["prepare", "base-model", "generator", "train-A", "train-A@43", "train-B", "train-B@43"] {
        assert!(partial.contains(&s.to_owned()), "{s} completed independently of synthesis: {partial:?}");
    }
    for s in ["synthesize", "train-C", "evaluate-0", "compare", "report"] {
        assert!(!partial.contains(&s.to_owned()), "{s} depends on synthesis: {partial:?}");
    }
    let v = hsx(&ws, &key, &["verify", "--require-artifacts", "--ledger", ledger.to_str().unwrap()]);
    assert!(v.status.success(), "the partial ledger verifies:\n{}", text(&v));

    // 2. Re-running resumes: the completed instances are skipped, the rest run.
    let second = hsx(&ws, &key, &["run", "--executor", "slurm", "--config", config_s, "--out", out_s]);
    let said = text(&second);
    assert!(second.status.success(), "{said}");
    assert!(said.contains("train-B@43 (skipped)") && said.contains("synthesize (ran)"), "{said}");
    let v = hsx(&ws, &key, &["verify", "--require-artifacts", "--ledger", ledger.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    let all = entries(&ledger);
    let stages: Vec<&str> = all.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    assert_eq!(stages.len(), 21, "15 stages, 6 of them a second time for seed 43: {stages:?}");
    assert_eq!(stages.iter().collect::<BTreeSet<_>>().len(), 21);

    // The pre-registration records the training seeds; compare reports each seed and the across-seed
    // results; the report shows both.
    let prereg = all.iter().find(|e| e["stage"] == "preregister").unwrap();
    assert_eq!(prereg["metrics"]["plan"]["replicates"], serde_json::json!([42, 43]));
    let cmp: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare/comparison.json")).unwrap()).unwrap();
    assert_eq!(cmp["replicates"]["seeds"], serde_json::json!([42, 43]));
    assert_eq!(cmp["replicates"]["per_replicate"].as_array().map(Vec::len), Some(2));
    let report = std::fs::read_to_string(out.join("runs/smoke-report/REPORT.md")).unwrap();
    assert!(report.contains("Training replicates"), "the report has no replicates section");

    // 3. One Slurm job per stage instance, each completed, dependencies respected (jobcomp/filetxt).
    let jobs = jobcomp(&conf);
    let job_of: BTreeMap<&str, &str> = all
        .iter()
        .map(|e| {
            (e["stage"].as_str().unwrap(), e["env"]["slurm"]["job_id"].as_str().expect("each entry names its job"))
        })
        .collect();
    assert_eq!(job_of.values().collect::<BTreeSet<_>>().len(), 21, "a distinct job per instance");
    assert_eq!(jobs[&cancelled]["JobState"], "CANCELLED");
    for (stage, id) in &job_of {
        let j = jobs.get(*id).unwrap_or_else(|| panic!("job {id} ({stage}) is not in the jobcomp log"));
        assert_eq!(j["JobState"], "COMPLETED", "{stage}");
        assert_eq!(j["Name"], format!("hsx:smoke:{stage}"));
    }
    let time = |id: &str, k: &str| jobs[id][k].clone();
    let mut writer_of: BTreeMap<String, &str> = BTreeMap::new();
    for e in &all {
        let stage = e["stage"].as_str().unwrap();
        for input in e["inputs"].as_array().unwrap() {
            if let Some(w) = writer_of.get(input["path"].as_str().unwrap()) {
                assert!(
                    time(job_of[stage], "StartTime") >= time(job_of[w], "EndTime"),
                    "{stage} started before {w}, whose output it reads, ended"
                );
            }
        }
        for o in e["outputs"].as_array().unwrap() {
            writer_of.insert(o["path"].as_str().unwrap().to_owned(), stage);
        }
        if stage.starts_with("evaluate-") {
            for t in stages.iter().filter(|s| s.starts_with("train-")) {
                assert!(
                    time(job_of[stage], "StartTime") >= time(job_of[t], "EndTime"),
                    "{stage} read the test split before {t} ended"
                );
            }
        }
    }
    // Jobs ran at the same time: at least two instances overlapped (two CPUs, one per job).
    let spans: Vec<(String, String)> = job_of.values().map(|id| (time(id, "StartTime"), time(id, "EndTime"))).collect();
    let overlapped = spans.iter().enumerate().any(|(i, a)| spans.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlapped, "no two jobs overlapped in time: {spans:?}");

    // 4. The local executor, same config: the same output hashes for every stage instance but the
    // report (which renders the ledger, times and job ids included).
    let local = dir.path().join("local-run");
    let l = hsx(&ws, &key, &["-q", "run", "--config", config_s, "--out", local.to_str().unwrap()]);
    assert!(l.status.success(), "{}", text(&l));
    let outputs = |e: &Value| -> BTreeSet<(String, String)> {
        e["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["path"].as_str().unwrap().to_owned(), r["sha256"].as_str().unwrap().to_owned()))
            .collect()
    };
    let local_entries = entries(&local.join("ledger.json"));
    assert_eq!(local_entries.len(), 21);
    for le in &local_entries {
        let stage = le["stage"].as_str().unwrap();
        if stage == "report" {
            continue;
        }
        let se = all.iter().find(|e| e["stage"] == le["stage"]).unwrap();
        assert_eq!(outputs(le), outputs(se), "{stage}: the local and the Slurm executor wrote different outputs");
    }

    // 5. `hsx reproduce` accepts the joined ledger: every instance re-run locally, byte-identical.
    let repro = dir.path().join("repro");
    let r = hsx(&ws, &key, &["reproduce", "--ledger", ledger.to_str().unwrap(), "--out", repro.to_str().unwrap()]);
    let said = text(&r);
    assert!(r.status.success() && said.contains("reproduced 21 stages"), "{said}");
}
