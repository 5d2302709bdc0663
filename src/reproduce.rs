//! `hsx reproduce`: re-runs every recorded stage with its recorded config, seeds and parameters into a
//! fresh run directory (never the original), compares each output with the recorded one, and says per
//! stage: *identical* (every recorded output compared and byte-identical, nothing extra written),
//! *within tolerance* (only where the entry records a tolerance and [`diff::within_tolerance`] checked
//! every changed value, printing the largest deviation), *diverged*, or *not compared*. For a
//! divergence it says where: the first differing file and, per format, the differing line, tensor or
//! every changed JSON value with its path (see [`diff`]); plus the environment fields that differ from
//! the recorded ones. The verdicts are signed entries of a reproduction ledger beside the new run.
//!
//! ```text
//! hsx reproduce --ledger ledger/exp-42.json
//! ```
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::PipelineError;
use crate::ledger::files::{record_path, FileRecord};
use crate::ledger::{Determinism, Entry, LedgerWriter, Root, Roots, SigningKeyFile, StageOutcome, StageSpec};
use crate::pipeline::{self, Progress, Setup};
use crate::stages::{self, Instance, Stage};

pub mod cause;
pub mod diff;
pub use diff::{OutputDiff, Verdict};

#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    pub ledger: PathBuf,
    pub out: PathBuf,
    pub from: Option<String>,
    pub key: PathBuf,
    pub workspace: PathBuf,
    pub data_mirror: Option<PathBuf>,
    /// Perturbations, to see how sensitive the result is: override the recorded thread count or seed.
    pub threads: Option<usize>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageVerdict {
    pub seq: u64,
    pub stage: String,
    pub verdict: Verdict,
    /// The determinism class the recorded entry declares.
    pub determinism: Determinism,
    /// Recorded output files.
    pub files: usize,
    /// `root:path` of each output that differs (or was not produced, or not recorded).
    pub differing: Vec<String>,
    /// The first difference, in terms of its format; or why the stage was not compared.
    pub detail: Option<String>,
    /// The largest deviation a tolerance check accepted.
    pub max_deviation: Option<f64>,
    /// Set when the re-run stage's code identity (`crate::stages::code`) is not the recorded one: the
    /// recorded and current hashes, or that the entry recorded none. A cause to look at first when the
    /// stage diverges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_changed: Option<String>,
    /// Set when a bitwise stage recorded on CUDA diverged and this run's GPU, driver, CUDA libraries or
    /// CUDA settings differ from the recorded ones ([`cause::likely_cause`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likely_cause: Option<String>,
    /// The statistics of an evaluate/compare stage whose bytes differ (crate::repro_stats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::repro_stats::StageStats>,
    /// The re-run's time against the recorded one.
    pub time: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReproduceReport {
    pub ledger: String,
    pub out: String,
    pub stages: Vec<StageVerdict>,
    pub env_differences: Vec<String>,
    pub first_divergence: Option<String>,
    pub ok: bool,
    /// identical | reproduced within tolerance | diverged (crate::repro_stats::overall).
    pub verdict: String,
    /// The largest deviation of each metric, metric → description.
    pub largest_deviations: BTreeMap<String, String>,
    /// What moved, when diverged.
    pub moved: Vec<String>,
    /// The first stage whose bytes differ (also when within tolerance).
    pub first_difference: Option<String>,
    /// The whole re-run's time against the recorded stages' total.
    pub time: Option<String>,
}

/// Environment fields that differ between the recorded entry and this machine.
pub fn env_differences(recorded: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let keys = [
        "/torch/cpu_capability",
        "/torch/intra_op_threads",
        "/torch/libtorch",
        "/torch/cuda_available",
        "/torch/deterministic_algorithms",
        "/cpu_model",
        "/logical_cores",
        "/hsx_version",
        "/cargo_lock_sha256",
        "/rustc",
    ];
    for k in keys {
        let (a, b) = (recorded.pointer(k), now.pointer(k));
        if a != b {
            out.push(format!(
                "{}: recorded {}, now {}",
                k.trim_start_matches('/').replace('/', "."),
                a.unwrap_or(&Value::Null),
                b.unwrap_or(&Value::Null)
            ));
        }
    }
    out
}

/// Re-runs the ledger's stages into `opts.out` and compares.
pub fn reproduce(opts: &ReproduceOptions, progress: &dyn Progress) -> Result<ReproduceReport, PipelineError> {
    let _one_at_a_time = pipeline::PROCESS_RUN.lock().unwrap_or_else(|p| p.into_inner());
    let ledger = crate::ledger::store::read(&opts.ledger)?;
    // The latest entry of each stage, in pipeline order.
    let latest = crate::report::latest_by_stage(&ledger.entries);
    let first_any = ledger.entries.first();
    let plan = match first_any.and_then(|e| serde_json::from_value::<Config>(e.config.clone()).ok()) {
        Some(c) => Instance::plan(c.experiment.seed, &c.experiment.replicate_seeds()),
        None => Stage::ALL.iter().map(|s| Instance::from(*s)).collect(),
    };
    let recorded: Vec<(Instance, &Entry)> =
        plan.iter().filter_map(|s| latest.get(&s.name()).map(|e| (*s, *e))).collect();
    let (_, first) = recorded
        .first()
        .ok_or_else(|| PipelineError::Usage(format!("{} has no entries to reproduce", opts.ledger.display())))?;
    let mut cfg: Config = serde_json::from_value(first.config.clone())
        .map_err(|source| PipelineError::RecordedConfig { ledger: opts.ledger.clone(), source })?;
    if let Some(t) = opts.threads {
        cfg.runtime.threads = t;
    }
    if let Some(s) = opts.seed {
        if s > crate::canonical::I_JSON_MAX_INTEGER {
            return Err(PipelineError::Usage(format!(
                "--seed {s} is too large: the seed is recorded in the ledger, whose numbers RFC 8785 tools read \
                 exactly only up to {} (2^53 - 1)",
                crate::canonical::I_JSON_MAX_INTEGER
            )));
        }
        cfg.experiment.seed = s;
    }
    // Any directory will do (absolute, `./x`, `x/`, `../x`): the reproduction is a self-contained run, so
    // its ledger records its run directory as `.` and every artifact path stays relative to it.
    let out = opts.workspace.join(&opts.out);
    if out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(PipelineError::Usage(format!(
            "{} is not empty; reproduce writes into a fresh directory (pass --out)",
            out.display()
        )));
    }
    let original_run = crate::ledger::store::locate(&opts.ledger, &ledger.header)?.run;
    if out.canonicalize().ok().zip(original_run.canonicalize().ok()).is_some_and(|(a, b)| a == b) {
        return Err(PipelineError::Usage("--out must not be the original run directory".into()));
    }
    let from_idx = match opts.from.as_deref() {
        None => 0,
        Some(f) => recorded
            .iter()
            .position(|(s, _)| s.name() == f)
            .ok_or_else(|| PipelineError::Usage(format!("the ledger has no stage {f:?}")))?,
    };
    // The reproduction writes its report inside its own directory, never over the original.
    let mut setup = Setup::new(cfg, &opts.workspace, opts.data_mirror.as_deref(), out.clone())?;
    setup.self_contained = true;
    let key = SigningKeyFile::load(&opts.key).map_err(crate::ledger::LedgerError::from)?;
    let repro_path = out.join("reproduction.json");
    let mut writer = LedgerWriter::open(
        &repro_path,
        &format!("{}-reproduction", ledger.header.experiment),
        &crate::ledger::Locations::new(out.clone(), &opts.workspace),
        key,
    )?;
    let _report_dir = setup.claim_report_dir(&writer)?;
    let env_now = pipeline::environment_now();
    let mut env_diff = env_differences(&first.env, &env_now);
    env_diff.extend(crate::runtime::pin_differences(&first.env["torch"], &env_now["torch"]));
    env_diff.extend(crate::runtime::gpu_differences(&first.env, &env_now));
    let places = Places {
        original_run: original_run.clone(),
        new_roots: setup.roots.clone(),
        workspace: opts.workspace.clone(),
    };

    let mut verdicts = Vec::new();
    let mut first_div: Option<String> = None;
    for (i, (stage, e)) in recorded.iter().enumerate() {
        if i < from_idx {
            copy_recorded_outputs(e, &original_run, &out)?;
            continue;
        }
        if stage.stage == Stage::Report {
            if let Some(d) = &first_div {
                // The report renders the recorded entries; with an upstream divergence it cannot match.
                verdicts.push(not_compared(e, format!("not re-run: it depends on {d}")));
                continue;
            }
        }
        let spec = stages::spec(*stage, &setup.cfg);
        let rspec = StageSpec {
            params: json!({"reproduces": {"seq": e.seq, "hash": e.hash}}),
            determinism: e.determinism.clone(),
            ..spec
        };
        let mut verdict: Option<StageVerdict> = None;
        let entry = setup.execute(*stage, rspec, &mut writer, &opts.ledger, progress, |mut outcome: StageOutcome| {
            let mut v = compare_outputs(e, &outcome.outputs, &places)?;
            if v.verdict == Verdict::Diverged {
                // Bytes differ: an evaluate/compare stage is judged by its statistics (the metrics within
                // their recorded intervals, the same verdicts); see crate::repro_stats.
                let scores = format!("{}/scores.jsonl", e.stage);
                let rows = crate::repro_stats::read_rows(&original_run.join(&scores)).zip(crate::repro_stats::read_rows(&out.join(&scores)));
                v.stats = crate::repro_stats::stage_stats(&e.stage, &e.metrics, &outcome.metrics, rows.as_ref().map(|(a, b)| (&a[..], &b[..])));
                if let Some(st) = &v.stats {
                    v.verdict = if st.within_tolerance() { Verdict::WithinTolerance } else { Verdict::Diverged };
                }
            }
            outcome.metrics = json!({"verdict": v.verdict, "differing": v.differing, "detail": v.detail, "files": v.files,
                                     "max_deviation": v.max_deviation});
            verdict = Some(v);
            Ok(outcome)
        })?;
        let mut v = verdict.expect("the stage body ran");
        let now_code = crate::stages::code::identity(stage.stage).sha256;
        v.code_changed = match e.env.get("stage_code_sha256").and_then(Value::as_str) {
            Some(rec) if rec == now_code => None,
            Some(rec) => Some(format!(
                "the stage's code differs from the recorded run's (code identity {} recorded, {} now)",
                rec.chars().take(12).collect::<String>(),
                &now_code[..12]
            )),
            None => Some("the recorded entry has no code identity (recorded by an older hsx)".into()),
        };
        v.likely_cause = cause::likely_cause(e, &v.verdict, &entry.env);
        v.time = Some(crate::repro_stats::time_vs_recorded(
            crate::repro_stats::seconds_between(&e.started, &e.finished),
            crate::repro_stats::seconds_between(&entry.started, &entry.finished),
        ));
        if v.verdict != Verdict::Identical && first_div.is_none() {
            first_div = Some(format!(
                "stage {} (entry {}): {}{}",
                v.stage,
                v.seq,
                v.differing.first().cloned().unwrap_or_default(),
                v.detail.as_ref().map(|d| format!(" — {d}")).unwrap_or_default()
            ));
        }
        verdicts.push(v);
    }
    let results: Vec<crate::repro_stats::StageResult> = verdicts
        .iter()
        .map(|v| crate::repro_stats::StageResult {
            stage: &v.stage,
            bytes_identical: v.verdict == Verdict::Identical,
            stats: v.stats.as_ref(),
        })
        .collect();
    let overall = crate::repro_stats::overall(&results);
    // A stage that was not compared never counts as reproduced.
    let ok = overall.verdict != crate::repro_stats::DIVERGED
        && verdicts.iter().all(|v| v.verdict != Verdict::NotCompared || first_div.is_some());
    let recorded_total: Option<f64> =
        recorded[from_idx..].iter().map(|(_, e)| crate::repro_stats::seconds_between(&e.started, &e.finished)).sum();
    let now_total = crate::repro_stats::seconds_between(
        &writer.ledger().entries.first().map(|x| x.started.clone()).unwrap_or_default(),
        &writer.ledger().entries.last().map(|x| x.finished.clone()).unwrap_or_default(),
    );
    Ok(ReproduceReport {
        ledger: opts.ledger.display().to_string(),
        out: opts.out.display().to_string(),
        stages: verdicts,
        env_differences: env_diff,
        first_divergence: if ok { None } else { first_div.clone() },
        ok,
        verdict: overall.verdict,
        largest_deviations: overall.largest,
        moved: overall.moved,
        first_difference: first_div,
        time: Some(crate::repro_stats::time_vs_recorded(recorded_total, now_total)),
    })
}

/// A stage before `--from`: its recorded outputs are the inputs of later stages; copy them in (each
/// read inside the original run directory, written inside the reproduction's, through [`crate::fsx`]).
fn copy_recorded_outputs(e: &Entry, original_run: &Path, out: &Path) -> Result<(), PipelineError> {
    for r in e.outputs.iter().filter(|r| r.root == Root::Run) {
        let src = original_run.join(&r.path);
        let dst = out.join(&r.path);
        crate::fsx::copy(original_run, &src, crate::fsx::Limit::ARTIFACT, out, &dst).map_err(|err| {
            PipelineError::Usage(format!(
                "--from: cannot copy the earlier output {} of stage {} ({err}); reproduce from the start",
                src.display(),
                e.stage
            ))
        })?;
    }
    Ok(())
}

fn not_compared(e: &Entry, why: String) -> StageVerdict {
    StageVerdict {
        seq: e.seq,
        stage: e.stage.clone(),
        verdict: Verdict::NotCompared,
        determinism: e.determinism.clone(),
        files: e.outputs.len(),
        differing: vec![],
        detail: Some(why),
        max_deviation: None,
        code_changed: None,
        likely_cause: None,
        stats: None,
        time: None,
    }
}

/// Where recorded and re-run files are.
pub struct Places {
    pub original_run: PathBuf,
    pub new_roots: Roots,
    pub workspace: PathBuf,
}

impl Places {
    fn recorded(&self, r: &FileRecord) -> PathBuf {
        match r.root {
            Root::Run => self.original_run.join(&r.path),
            _ => self.workspace.join(&r.path),
        }
    }
    fn now(&self, r: &FileRecord) -> PathBuf {
        self.new_roots.get(r.root).map(|b| b.join(&r.path)).unwrap_or_else(|| self.workspace.join(&r.path))
    }
}

/// Compares a stage's new outputs with those `e` recorded (run files by run-relative path, workspace
/// files — the report — by name): every recorded file is compared, and every new file must be recorded.
pub fn compare_outputs(
    e: &Entry,
    new_outputs: &[(Root, String)],
    places: &Places,
) -> Result<StageVerdict, PipelineError> {
    let mut new: Vec<FileRecord> = Vec::new();
    for (root, rel) in new_outputs {
        new.extend(record_path(&places.new_roots, *root, rel)?);
    }
    // Report files are matched by name: a run in the workspace layout keeps its report under the
    // workspace, a self-contained run (every reproduction) under its own run directory.
    let by_name = e.stage == Stage::Report.name();
    let key = |r: &FileRecord| -> String {
        match r.root {
            Root::Workspace => {
                Path::new(&r.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            }
            _ if by_name => {
                Path::new(&r.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            }
            _ => r.path.clone(),
        }
    };
    let new_by: BTreeMap<String, &FileRecord> = new.iter().map(|r| (key(r), r)).collect();
    let recorded_keys: std::collections::BTreeSet<String> = e.outputs.iter().map(key).collect();
    let mut diffs: Vec<(String, OutputDiff)> = Vec::new();
    for r in &e.outputs {
        let name = format!("{}:{}", r.root, r.path);
        match new_by.get(&key(r)) {
            None => diffs.push((name, OutputDiff::NotProduced)),
            Some(n) if n.sha256 != r.sha256 || n.bytes != r.bytes => {
                let old_path = places.recorded(r);
                let d = if old_path.is_file() {
                    diff::pinpoint(&old_path, &places.now(n))
                } else {
                    OutputDiff::RecordedFileAbsent { recorded_sha256: r.sha256.clone(), now_sha256: n.sha256.clone() }
                };
                diffs.push((name, d));
            }
            Some(_) => {}
        }
    }
    for n in new.iter().filter(|n| !recorded_keys.contains(&key(n))) {
        diffs.push((format!("{}:{}", n.root, n.path), OutputDiff::NotRecorded));
    }
    let (verdict, max_deviation, note) = diff::judge(&e.determinism, &diffs);
    let first = diffs.first().map(|(_, d)| d.detail());
    let detail = match (first, note) {
        (Some(f), Some(n)) if verdict != Verdict::WithinTolerance => Some(format!("{f} ({n})")),
        (_, Some(n)) if verdict == Verdict::WithinTolerance => Some(n),
        (f, n) => f.or(n),
    };
    Ok(StageVerdict {
        seq: e.seq,
        stage: e.stage.clone(),
        verdict,
        determinism: e.determinism.clone(),
        files: e.outputs.len(),
        differing: diffs
            .iter()
            .map(|(name, d)| match d {
                OutputDiff::NotProduced => format!("{name} (not produced)"),
                OutputDiff::NotRecorded => format!("{name} (not recorded)"),
                _ => name.clone(),
            })
            .collect(),
        detail,
        max_deviation,
        code_changed: None,
        likely_cause: None,
        stats: None,
        time: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outputs: Vec<FileRecord>, determinism: Determinism) -> Entry {
        serde_json::from_value(json!({
            "seq": 11, "stage": "compare", "experiment": "x", "header_sha256": "", "prev": "", "started": "", "finished": "",
            "git": {"state": "no-repository"}, "env": {}, "seeds": {"master": 1, "stage": 2}, "params": {}, "config": {},
            "config_sha256": "", "inputs": [], "outputs": outputs, "determinism": determinism, "metrics": {}, "hash": "", "signature": "",
        }))
        .unwrap()
    }

    /// Writes `compare/comparison.json` with H1's verdict `verdict` under `run`.
    fn write(run: &Path, verdict: &str, n: f64) {
        std::fs::create_dir_all(run.join("compare")).unwrap();
        let v = json!({"hypotheses": [{"id": "H1", "verdict": verdict}], "n": n});
        std::fs::write(run.join("compare/comparison.json"), format!("{}\n", serde_json::to_string_pretty(&v).unwrap()))
            .unwrap();
    }

    fn places(dir: &Path) -> Places {
        Places {
            original_run: dir.join("orig"),
            new_roots: Roots { run: Some(dir.join("new")), data: None, workspace: Some(dir.to_owned()) },
            workspace: dir.to_owned(),
        }
    }

    fn recorded(dir: &Path) -> Vec<FileRecord> {
        let roots = Roots { run: Some(dir.join("orig")), data: None, workspace: Some(dir.to_owned()) };
        record_path(&roots, Root::Run, "compare/comparison.json").unwrap()
    }

    #[test]
    fn outputs_differing_only_in_a_json_string_diverge_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("orig"), "supported", 3.0);
        write(&d.path().join("new"), "inconclusive", 3.0);
        let outs = [(Root::Run, "compare/comparison.json".to_owned())];
        for det in [Determinism::Bitwise, Determinism::Tolerance { metric: "*".into(), epsilon: 1.0 }] {
            let v = compare_outputs(&entry(recorded(d.path()), det.clone()), &outs, &places(d.path())).unwrap();
            assert_eq!(v.verdict, Verdict::Diverged, "{det:?}: {v:?}");
            assert_eq!(v.differing, ["run:compare/comparison.json"]);
            let detail = v.detail.unwrap();
            assert!(detail.contains("$.hypotheses[0].verdict: \"supported\" → \"inconclusive\""), "{detail}");
        }
    }

    #[test]
    fn identical_only_when_every_output_was_compared_and_matches() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("orig"), "supported", 3.0);
        write(&d.path().join("new"), "supported", 3.0);
        let outs = vec![(Root::Run, "compare/comparison.json".to_owned())];
        let v = compare_outputs(&entry(recorded(d.path()), Determinism::Bitwise), &outs, &places(d.path())).unwrap();
        assert_eq!(v.verdict, Verdict::Identical, "{v:?}");
        // A file the re-run wrote that the entry never recorded is a difference, not ignored.
        std::fs::write(d.path().join("new/compare/extra.csv"), "x\n").unwrap();
        let more = vec![outs[0].clone(), (Root::Run, "compare/extra.csv".to_owned())];
        let v = compare_outputs(&entry(recorded(d.path()), Determinism::Bitwise), &more, &places(d.path())).unwrap();
        assert_eq!(v.verdict, Verdict::Diverged);
        assert_eq!(v.differing, ["run:compare/extra.csv (not recorded)"]);
        // Not produced at all.
        let v = compare_outputs(&entry(recorded(d.path()), Determinism::Bitwise), &[], &places(d.path())).unwrap();
        assert_eq!(v.differing, ["run:compare/comparison.json (not produced)"]);
    }

    #[test]
    fn a_recorded_tolerance_is_checked_and_its_largest_deviation_reported() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("orig"), "supported", 3.0);
        write(&d.path().join("new"), "supported", 3.0004);
        let outs = [(Root::Run, "compare/comparison.json".to_owned())];
        let tol = |eps: f64| Determinism::Tolerance { metric: "n".into(), epsilon: eps };
        let v = compare_outputs(&entry(recorded(d.path()), tol(1e-3)), &outs, &places(d.path())).unwrap();
        assert_eq!(v.verdict, Verdict::WithinTolerance, "{v:?}");
        assert!((v.max_deviation.unwrap() - 4e-4).abs() < 1e-9);
        let v = compare_outputs(&entry(recorded(d.path()), tol(1e-4)), &outs, &places(d.path())).unwrap();
        assert_eq!(v.verdict, Verdict::Diverged);
        assert!(v.detail.unwrap().contains("$.n"));
    }
}
