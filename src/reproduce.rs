//! `hsx reproduce`: re-runs every recorded stage with its recorded config, seeds and parameters into a
//! fresh run directory (never the original), compares each output's hash with the recorded one, and says
//! per stage: *identical*, *within tolerance* (per the entry's determinism class) or *diverged* — and
//! for a divergence, where: the first differing file; in JSONL the first differing line; in safetensors
//! the first differing tensor and its max-abs difference; in JSON the numeric deltas; plus the
//! environment fields that differ from the recorded ones. The verdicts are signed entries of a
//! reproduction ledger beside the new run.
//!
//! ```text
//! hsx reproduce --ledger ledger/exp-42.json
//! ```
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::ledger::files::{record_path, FileRecord};
use crate::ledger::{Determinism, Entry, LedgerWriter, Recorder, Root, Roots, SigningKeyFile, StageOutcome, StageSpec};
use crate::pipeline::{self, PipelineError, Progress};

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
    /// identical | within tolerance | diverged
    pub verdict: String,
    pub files: usize,
    pub differing: Vec<String>,
    pub detail: Option<String>,
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
            out.push(format!("{}: recorded {}, now {}", k.trim_start_matches('/').replace('/', "."), a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)));
        }
    }
    out
}

fn first_line_difference(a: &Path, b: &Path) -> Option<String> {
    let ta = std::fs::read_to_string(a).ok()?;
    let tb = std::fs::read_to_string(b).ok()?;
    for (i, (x, y)) in ta.lines().zip(tb.lines()).enumerate() {
        if x != y {
            let cut = |s: &str| s.chars().take(160).collect::<String>();
            return Some(format!("first differing line {}: recorded {:?}, now {:?}", i + 1, cut(x), cut(y)));
        }
    }
    Some(format!("line counts differ: {} recorded, {} now", ta.lines().count(), tb.lines().count()))
}

fn tensor_difference(a: &Path, b: &Path) -> Option<String> {
    let mut ta = tch::Tensor::read_safetensors(a).ok()?;
    let mut tb = tch::Tensor::read_safetensors(b).ok()?;
    ta.sort_by(|x, y| x.0.cmp(&y.0));
    tb.sort_by(|x, y| x.0.cmp(&y.0));
    for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
        if na != nb {
            return Some(format!("tensor names differ: {na} vs {nb}"));
        }
        if xa.size() != xb.size() {
            return Some(format!("tensor {na}: shape {:?} vs {:?}", xa.size(), xb.size()));
        }
        if !xa.equal(xb) {
            let d = (xa.to_kind(tch::Kind::Double) - xb.to_kind(tch::Kind::Double)).abs().max().double_value(&[]);
            return Some(format!("first differing tensor {na}: max-abs difference {d:e}"));
        }
    }
    None
}

fn json_deltas(a: &Path, b: &Path) -> Option<String> {
    let va: Value = serde_json::from_str(&std::fs::read_to_string(a).ok()?).ok()?;
    let vb: Value = serde_json::from_str(&std::fs::read_to_string(b).ok()?).ok()?;
    let mut deltas = Vec::new();
    fn walk(p: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x {
                    if let Some(w) = y.get(k) {
                        walk(&format!("{p}.{k}"), v, w, out);
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{p}[{i}]"), v, w, out);
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                if x != y {
                    out.push(format!("{p}: {x} → {y} (Δ {:+e})", y - x));
                }
            }
            _ => {}
        }
    }
    walk("", &va, &vb, &mut deltas);
    Some(if deltas.is_empty() { "no numeric differences".into() } else { deltas.into_iter().take(6).collect::<Vec<_>>().join("; ") })
}

/// Where a recorded file and its re-run differ, in the most useful terms for its format.
pub fn pinpoint(recorded_path: &Path, new_path: &Path) -> String {
    let name = new_path.to_string_lossy();
    let detail = if name.ends_with(".jsonl") || name.ends_with(".csv") || name.ends_with(".md") {
        first_line_difference(recorded_path, new_path)
    } else if name.ends_with(".safetensors") {
        tensor_difference(recorded_path, new_path)
    } else if name.ends_with(".json") {
        json_deltas(recorded_path, new_path)
    } else {
        None
    };
    detail.unwrap_or_else(|| "contents differ".into())
}

/// Re-runs the ledger's stages into `opts.out` and compares.
pub fn reproduce(opts: &ReproduceOptions, progress: &dyn Progress) -> Result<ReproduceReport, PipelineError> {
    let _one_at_a_time = pipeline::PROCESS_RUN.lock().unwrap_or_else(|p| p.into_inner());
    let ledger = crate::ledger::store::read(&opts.ledger)?;
    let stages: Vec<&Entry> = {
        // The latest entry of each stage, in pipeline order.
        let latest = crate::report::latest_by_stage(&ledger.entries);
        pipeline::STAGES.iter().filter_map(|(s, _)| latest.get(*s).copied()).collect()
    };
    let first = stages.first().ok_or_else(|| PipelineError::Usage(format!("{} has no entries to reproduce", opts.ledger.display())))?;
    let mut cfg: Config = serde_json::from_value(first.config.clone())
        .map_err(|e| PipelineError::Usage(format!("the recorded config does not parse with this hsx: {e}")))?;
    if let Some(t) = opts.threads {
        cfg.runtime.threads = t;
    }
    if let Some(s) = opts.seed {
        cfg.experiment.seed = s;
    }
    let out = opts.workspace.join(&opts.out);
    if out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(PipelineError::Usage(format!("{} is not empty; reproduce writes into a fresh directory (pass --out)", out.display())));
    }
    let original_run = opts.workspace.join(&ledger.header.run_dir);
    if out.canonicalize().ok().zip(original_run.canonicalize().ok()).is_some_and(|(a, b)| a == b) {
        return Err(PipelineError::Usage("--out must not be the original run directory".into()));
    }
    std::fs::create_dir_all(&out).map_err(|source| crate::data::DataError::Io { path: out.clone(), source })?;
    crate::runtime::set_threads(cfg.runtime.threads);
    crate::runtime::set_deterministic(cfg.runtime.deterministic).map_err(PipelineError::Usage)?;
    let report_rel = format!("{}/report", opts.out.to_string_lossy().trim_end_matches('/'));
    let roots = Roots {
        run: Some(out.clone()),
        data: Some(pipeline::data_root(&opts.workspace, opts.data_mirror.as_deref(), &cfg.data.dir)),
        workspace: Some(opts.workspace.clone()),
    };
    let key = SigningKeyFile::load(&opts.key).map_err(crate::ledger::LedgerError::from)?;
    let repro_path = out.join("reproduction.json");
    let mut writer = LedgerWriter::open(&repro_path, &format!("{}-reproduction", ledger.header.experiment), &opts.out.to_string_lossy(), key)?;
    let env_now = crate::provenance::environment(serde_json::to_value(crate::runtime::facts()).unwrap_or(Value::Null));
    let mut env_diff = env_differences(&first.env, &env_now);
    env_diff.extend(crate::runtime::pin_differences(&first.env["torch"], &env_now["torch"]));
    let from_idx = opts.from.as_deref().map(|f| stages.iter().position(|e| e.stage == f)).unwrap_or(Some(0));
    let Some(from_idx) = from_idx else {
        return Err(PipelineError::Usage(format!("the ledger has no stage {:?}", opts.from)));
    };
    let mut verdicts = Vec::new();
    let mut first_div = None;
    let config_value = serde_json::to_value(&cfg).expect("config");
    for (i, e) in stages.iter().enumerate() {
        if i < from_idx {
            // Not re-run: its recorded outputs are the inputs of later stages; copy them in.
            for r in &e.outputs {
                if r.root == Root::Run {
                    let src = original_run.join(&r.path);
                    let dst = out.join(&r.path);
                    if let Some(p) = dst.parent() {
                        let _ = std::fs::create_dir_all(p);
                    }
                    std::fs::copy(&src, &dst).map_err(|_| {
                        PipelineError::Usage(format!("--from {}: the earlier output {} is missing; reproduce from the start", e.stage, src.display()))
                    })?;
                }
            }
            continue;
        }
        if e.stage == "report" {
            if let Some(d) = &first_div {
                // The report renders the recorded entries; with upstream bytes differing it cannot match.
                verdicts.push(StageVerdict {
                    seq: e.seq,
                    stage: e.stage.clone(),
                    verdict: "different bytes".into(),
                    files: e.outputs.len(),
                    differing: vec![],
                    detail: Some(format!("not re-run: it depends on {d}")),
                    stats: None,
                    time: None,
                });
                continue;
            }
        }
        let mut stage_cfg = cfg.clone();
        stage_cfg.experiment.report_dir = report_rel.clone();
        let spec = pipeline::stage_spec(&e.stage, &stage_cfg);
        pipeline::preflight(&spec, &roots, &stage_cfg)?;
        progress.stage_started(&e.stage);
        let recorded = e.outputs.clone();
        let determinism = e.determinism.clone();
        let stage_name = e.stage.clone();
        let ledger_path = opts.ledger.clone();
        let mut recorder = Recorder {
            writer: &mut writer,
            roots: roots.clone(),
            config: config_value.clone(),
            master_seed: cfg.experiment.seed,
            git: crate::provenance::git_state(&opts.workspace),
            env: Box::new(|| crate::provenance::environment(serde_json::to_value(crate::runtime::facts()).unwrap_or(Value::Null))),
        };
        let rspec = StageSpec { stage: stage_name.clone(), params: json!({"reproduces": {"seq": e.seq, "hash": e.hash}}), inputs: spec.inputs.clone(), determinism: determinism.clone() };
        let mut verdict_out: Option<StageVerdict> = None;
        let entry = recorder.record(rspec, |ctx| -> Result<StageOutcome, PipelineError> {
            let mut outcome = pipeline::stage_body(&stage_name, &stage_cfg, &roots, ctx.seed, &ledger_path, progress)?;
            let mut v = compare_outputs(e, &recorded, &outcome, &roots, &original_run, &opts.workspace, &determinism)?;
            if v.verdict != "identical" {
                // Bytes differ: an evaluate/compare stage is judged by its statistics.
                let scores = format!("{stage_name}/scores.jsonl");
                let rows = crate::repro_stats::read_rows(&original_run.join(&scores)).zip(crate::repro_stats::read_rows(&out.join(&scores)));
                v.stats = crate::repro_stats::stage_stats(&stage_name, &e.metrics, &outcome.metrics, rows.as_ref().map(|(a, b)| (&a[..], &b[..])));
                if let Some(st) = &v.stats {
                    v.verdict = if st.within_tolerance() { "within tolerance" } else { "diverged" }.into();
                }
            }
            outcome.metrics = json!({"verdict": v.verdict, "differing": v.differing, "detail": v.detail, "files": v.files});
            verdict_out = Some(v);
            Ok(outcome)
        })??;
        progress.stage_finished(&e.stage, &entry);
        let mut v = verdict_out.expect("the stage body ran");
        v.time = Some(crate::repro_stats::time_vs_recorded(
            crate::repro_stats::seconds_between(&e.started, &e.finished),
            crate::repro_stats::seconds_between(&entry.started, &entry.finished),
        ));
        if v.verdict != "identical" && first_div.is_none() {
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
        .map(|v| crate::repro_stats::StageResult { stage: &v.stage, bytes_identical: v.verdict == "identical", stats: v.stats.as_ref() })
        .collect();
    let overall = crate::repro_stats::overall(&results);
    let ok = overall.verdict != crate::repro_stats::DIVERGED;
    let recorded_total: Option<f64> = stages[from_idx..].iter().map(|e| crate::repro_stats::seconds_between(&e.started, &e.finished)).sum();
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

/// Compares a stage's new outputs with the recorded ones (matching run-relative paths, and report files
/// by name).
#[allow(clippy::too_many_arguments)]
fn compare_outputs(
    e: &Entry,
    recorded: &[FileRecord],
    outcome: &StageOutcome,
    roots: &Roots,
    original_run: &Path,
    workspace: &Path,
    determinism: &Determinism,
) -> Result<StageVerdict, PipelineError> {
    let mut new: Vec<FileRecord> = Vec::new();
    for (root, rel) in &outcome.outputs {
        new.extend(record_path(roots, *root, rel)?);
    }
    let key = |r: &FileRecord| -> String {
        match r.root {
            Root::Workspace => Path::new(&r.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            _ => r.path.clone(),
        }
    };
    let new_by: BTreeMap<String, &FileRecord> = new.iter().map(|r| (key(r), r)).collect();
    let mut differing = Vec::new();
    let mut detail = None;
    for r in recorded {
        match new_by.get(&key(r)) {
            None => differing.push(format!("{}:{} (not produced)", r.root, r.path)),
            Some(n) if n.sha256 != r.sha256 => {
                differing.push(format!("{}:{}", r.root, r.path));
                if detail.is_none() {
                    let old_path = match r.root {
                        Root::Run => original_run.join(&r.path),
                        _ => workspace.join(&r.path),
                    };
                    let new_path = match n.root {
                        Root::Run => roots.run.clone().unwrap_or_default().join(&n.path),
                        _ => workspace.join(&n.path),
                    };
                    detail = Some(crate::repro_stats::different_bytes_message(&old_path, &new_path, &r.sha256, &n.sha256));
                }
            }
            Some(_) => {}
        }
    }
    let verdict = if differing.is_empty() {
        "identical"
    } else if matches!(determinism, Determinism::Nondeterministic { .. }) {
        "within tolerance"
    } else {
        // Judged by the statistics of this stage or a later one (crate::repro_stats::overall).
        "different bytes"
    };
    if verdict == "different bytes" && matches!(determinism, Determinism::Bitwise) {
        detail = detail.map(|d| format!("recorded as bitwise-deterministic, but {d}"));
    }
    Ok(StageVerdict { seq: e.seq, stage: e.stage.clone(), verdict: verdict.into(), files: recorded.len(), differing, detail, stats: None, time: None })
}
