//! The stage graph: run, resume, and (later) reproduce. Each stage is one signed ledger entry.
//!
//! Stages, in order (DESIGN.md §2): `prepare` → `base-model` → `contaminate` → `generator` →
//! `synthesize` → `train-A/B/C` → `evaluate-A/B/C` → `compare` → `report`. Those not built yet are listed
//! by `hsx run` as pending; it runs the ones that exist.
//!
//! Resuming: a stage whose latest entry has the same params, config hash, input hashes and code identity
//! (hsx version, git commit and diff), and whose outputs still verify on disk, is skipped.
//!
//! ```text
//! hsx run --config configs/smoke.toml --ledger ledger/smoke.json
//! ```
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::config::{Config, ModelSpec};
use crate::stages;
use crate::data::{self, split, stats, DataError};
use crate::ledger::files::{hash_file, record_path};
use crate::ledger::{
    Determinism, Entry, GitState, LedgerError, LedgerWriter, Recorder, Root, Roots, SigningKeyFile, StageOutcome,
    StageSpec,
};

/// Every stage of the experiment, in order, and whether this build implements it.
pub const STAGES: &[(&str, bool)] = &[
    ("prepare", true),
    ("base-model", true),
    ("contaminate", true),
    ("generator", true),
    ("synthesize", true),
    ("train-A", true),
    ("train-B", true),
    ("train-C", true),
    ("evaluate-A", true),
    ("evaluate-B", true),
    ("evaluate-C", true),
    ("compare", true),
    ("report", true),
];

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Usage(String),
}

/// Progress reporting, so stages never print. The CLI implements it with indicatif / JSON lines.
pub trait Progress {
    fn stage_started(&self, stage: &str);
    fn stage_skipped(&self, stage: &str, reason: &str);
    fn stage_finished(&self, stage: &str, entry: &Entry);
    fn note(&self, message: &str);
    /// Progress of a training loop inside `stage`.
    fn trainer(&self, _stage: &str) -> Box<dyn crate::model::train::TrainProgress + '_> {
        Box::new(crate::model::train::NoProgress)
    }
}

/// A `Progress` that discards everything (tests, library callers).
pub struct Quiet;
impl Progress for Quiet {
    fn stage_started(&self, _: &str) {}
    fn stage_skipped(&self, _: &str, _: &str) {}
    fn stage_finished(&self, _: &str, _: &Entry) {}
    fn note(&self, _: &str) {}
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub ledger_path: PathBuf,
    pub key_path: PathBuf,
    /// The directory hsx runs in; `runs/`, `data/`, `models/` are relative to it.
    pub workspace: PathBuf,
    /// `HSX_DATA_MIRROR`: a directory holding `cosmosqa/<files>`, read in place.
    pub data_mirror: Option<PathBuf>,
    pub only: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub stage: String,
    /// "ran", "skipped" (resumed) or "pending" (not built yet).
    pub status: String,
    pub seq: Option<u64>,
    pub hash: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub ledger: String,
    pub run_dir: String,
    pub stages: Vec<StageResult>,
}

/// The CosmosQA data directory: `<mirror>/cosmosqa` when a mirror is set, else the config's `data.dir`.
pub fn data_root(workspace: &Path, mirror: Option<&Path>, data_dir: &str) -> PathBuf {
    match mirror {
        Some(m) => m.join("cosmosqa"),
        None => workspace.join(data_dir),
    }
}

pub fn run_dir_rel(cfg: &Config) -> String {
    format!("{}/{}", cfg.experiment.runs_dir.trim_end_matches('/'), cfg.experiment.id)
}

fn stage_index(name: &str) -> Result<usize, PipelineError> {
    STAGES.iter().position(|(s, _)| *s == name).ok_or_else(|| {
        let names: Vec<&str> = STAGES.iter().map(|(s, _)| *s).collect();
        PipelineError::Usage(format!("unknown stage {name:?}; stages are: {}", names.join(", ")))
    })
}

/// libtorch's seed, thread count and determinism switches are process-wide: two runs in one process
/// (tests, a library caller) must not interleave, or their random streams mix.
pub(crate) static PROCESS_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the pipeline (the stages built so far), resuming from the ledger.
pub fn run(opts: &RunOptions, progress: &dyn Progress) -> Result<RunSummary, PipelineError> {
    let _one_at_a_time = PROCESS_RUN.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = Config::load(&opts.config_path)?;
    let only = opts.only.as_deref().map(stage_index).transpose()?;
    let from = opts.from.as_deref().map(stage_index).transpose()?;
    let key = SigningKeyFile::load(&opts.key_path).map_err(LedgerError::from)?;
    let run_rel = run_dir_rel(&cfg);
    let mut writer = LedgerWriter::open(&opts.ledger_path, &cfg.experiment.id, &crate::ledger::Locations::new(opts.workspace.join(&run_rel), &opts.workspace), key)?;

    crate::runtime::set_threads(cfg.runtime.threads);
    crate::runtime::set_deterministic(cfg.runtime.deterministic)
        .map_err(|m| PipelineError::Usage(format!("cannot configure libtorch: {m}")))?;

    let run_dir = opts.workspace.join(&run_rel);
    std::fs::create_dir_all(&run_dir).map_err(|source| DataError::Io { path: run_dir.clone(), source })?;
    let roots = Roots {
        run: Some(run_dir.clone()),
        data: Some(data_root(&opts.workspace, opts.data_mirror.as_deref(), &cfg.data.dir)),
        workspace: Some(opts.workspace.clone()),
    };
    let config_value = serde_json::to_value(&cfg).expect("config serialises");
    let git = crate::provenance::git_state(&opts.workspace);
    let mut summary = RunSummary {
        ledger: opts.ledger_path.display().to_string(),
        run_dir: run_rel.clone(),
        stages: Vec::new(),
    };

    for (i, (stage, built)) in STAGES.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        if !built {
            summary.stages.push(StageResult { stage: stage.to_string(), status: "pending".into(), seq: None, hash: None });
            continue;
        }
        let spec = stage_spec(stage, &cfg);
        let forced = from.is_some_and(|f| i >= f) || only == Some(i);
        if !forced {
            if let Some(e) = resumable(writer.ledger().entries.as_slice(), &spec, &config_value, &git, &roots) {
                progress.stage_skipped(stage, &format!("already recorded as entry {} ({})", e.seq, &e.hash[..12]));
                summary.stages.push(StageResult {
                    stage: stage.to_string(),
                    status: "skipped".into(),
                    seq: Some(e.seq),
                    hash: Some(e.hash.clone()),
                });
                continue;
            }
        }
        preflight(&spec, &roots, &cfg)?;
        progress.stage_started(stage);
        let mut recorder = Recorder {
            writer: &mut writer,
            roots: roots.clone(),
            config: config_value.clone(),
            master_seed: cfg.experiment.seed,
            git: git.clone(),
            env: Box::new(|| crate::provenance::environment(serde_json::to_value(crate::runtime::facts()).unwrap_or(Value::Null))),
        };
        let ledger_path = opts.ledger_path.clone();
        let entry = recorder.record(spec, |ctx| stage_body(stage, &cfg, &roots, ctx.seed, &ledger_path, progress))??;
        progress.stage_finished(stage, &entry);
        summary.stages.push(StageResult {
            stage: stage.to_string(),
            status: "ran".into(),
            seq: Some(entry.seq),
            hash: Some(entry.hash.clone()),
        });
    }
    Ok(summary)
}

/// Runs one stage's body (the work between hashing its inputs and hashing its outputs).
pub fn stage_body(
    stage: &str,
    cfg: &Config,
    roots: &Roots,
    seed: u64,
    ledger_path: &Path,
    progress: &dyn Progress,
) -> Result<StageOutcome, PipelineError> {
    crate::runtime::seed(seed);
    match stage {
        "prepare" => prepare(cfg, roots, seed),
        "base-model" => base_model(cfg, roots, seed, progress.trainer(stage).as_ref()),
        "contaminate" => stages::contaminate(cfg, roots, seed, progress.trainer(stage).as_ref()),
        "generator" => stages::generator(cfg, roots, seed, progress.trainer(stage).as_ref()),
        "synthesize" => stages::synthesize(cfg, roots, seed, progress.trainer(stage).as_ref()),
        s if s.starts_with("train-") => stages::train_model(cfg, roots, seed, s.chars().last().unwrap_or('A'), progress.trainer(stage).as_ref()),
        s if s.starts_with("evaluate-") => stages::evaluate(cfg, roots, seed, s.chars().last().unwrap_or('A'), progress.trainer(stage).as_ref()),
        "compare" => crate::compare::compare(cfg, roots, seed),
        "report" => report_stage(cfg, roots, ledger_path),
        other => Err(PipelineError::Usage(format!("stage {other} has no implementation"))),
    }
}

/// What each stage reads and its slice of the config.
pub fn stage_spec(stage: &str, cfg: &Config) -> StageSpec {
    match stage {
        "prepare" => StageSpec {
            stage: stage.into(),
            params: json!({ "data": cfg.data, "split": cfg.split, "seed": cfg.experiment.seed }),
            inputs: cfg.data.files.iter().map(|f| (Root::Data, f.clone())).collect(),
            determinism: Determinism::Bitwise,
        },
        "base-model" => StageSpec {
            stage: stage.into(),
            params: json!({ "model": cfg.model, "runtime": cfg.runtime }),
            inputs: match &cfg.model {
                ModelSpec::HfDir { path } => vec![(Root::Workspace, path.clone())],
                ModelSpec::Scratch { .. } => vec![(Root::Run, "prepare/human_train.jsonl".into())],
            },
            determinism: Determinism::Bitwise,
        },
        "contaminate" => StageSpec {
            stage: stage.into(),
            params: json!({ "contaminate": cfg.contaminate, "max_input_tokens": cfg.train.max_input_tokens, "runtime": cfg.runtime }),
            inputs: vec![(Root::Run, "prepare/human_train.jsonl".into()), base_input(cfg)],
            determinism: Determinism::Bitwise,
        },
        "generator" => StageSpec {
            stage: stage.into(),
            params: json!({ "generator": cfg.generator, "train": cfg.train, "lora": cfg.lora, "runtime": cfg.runtime }),
            inputs: vec![(Root::Run, "prepare/human_train.jsonl".into()), base_input(cfg)],
            determinism: Determinism::Bitwise,
        },
        "synthesize" => StageSpec {
            stage: stage.into(),
            params: json!({ "synth": cfg.synth, "filters": cfg.filters, "max_input_tokens": cfg.train.max_input_tokens, "runtime": cfg.runtime }),
            inputs: vec![(Root::Run, "prepare/human_train.jsonl".into()), base_input(cfg), (Root::Run, "generator/adapter".into())],
            determinism: Determinism::Bitwise,
        },
        s if s.starts_with("train-") => StageSpec {
            stage: stage.into(),
            params: json!({ "train": cfg.train, "lora": cfg.lora, "runtime": cfg.runtime }),
            inputs: vec![
                (Root::Run, stages::training_file(s.chars().last().unwrap_or('A')).into()),
                (Root::Run, "prepare/human_val.jsonl".into()),
                base_input(cfg),
            ],
            determinism: Determinism::Bitwise,
        },
        s if s.starts_with("evaluate-") => StageSpec {
            stage: stage.into(),
            params: json!({ "eval": cfg.eval, "max_input_tokens": cfg.train.max_input_tokens, "runtime": cfg.runtime }),
            inputs: vec![
                (Root::Run, "prepare/human_test.jsonl".into()),
                (Root::Run, format!("train-{}/adapter", s.chars().last().unwrap_or('A'))),
                base_input(cfg),
            ],
            determinism: Determinism::Bitwise,
        },
        "compare" => StageSpec {
            stage: stage.into(),
            params: json!({ "eval": cfg.eval }),
            inputs: ['A', 'B', 'C']
                .iter()
                .flat_map(|m| {
                    [
                        (Root::Run, format!("evaluate-{m}/scores.jsonl")),
                        (Root::Run, format!("evaluate-{m}/predictions.jsonl")),
                        (Root::Run, format!("train-{m}/train_metrics.json")),
                    ]
                })
                .collect(),
            determinism: Determinism::Bitwise,
        },
        "report" => StageSpec {
            stage: stage.into(),
            params: json!({
                "report_dir": cfg.experiment.report_dir,
                "template_sha256": crate::canonical::sha256_hex(crate::report::DEFAULT_TEMPLATE.as_bytes()),
            }),
            inputs: vec![(Root::Run, "compare".into())],
            determinism: Determinism::Bitwise,
        },
        other => StageSpec { stage: other.into(), params: Value::Null, inputs: vec![], determinism: Determinism::Bitwise },
    }
}

/// Every input of a stage must exist before it runs; a missing one is named with where to get it.
pub fn preflight(spec: &StageSpec, roots: &Roots, cfg: &Config) -> Result<(), PipelineError> {
    for (root, rel) in &spec.inputs {
        let Some(base) = roots.get(*root) else { continue };
        let path = base.join(rel);
        if path.exists() {
            continue;
        }
        let hint = match root {
            Root::Data => format!(
                "run `hsx data fetch` to download the official CosmosQA files into {}, or set HSX_DATA_MIRROR \
                 to a directory holding cosmosqa/{rel}",
                cfg.data.dir
            ),
            Root::Workspace => "see the README for where this file comes from".to_owned(),
            Root::Run => "an earlier stage should have written it; re-run with --from that stage".to_owned(),
        };
        return Err(DataError::Missing(format!("stage {}: {} does not exist; {hint}", spec.stage, path.display())).into());
    }
    Ok(())
}

/// The latest entry for `spec.stage`, if re-running it would change nothing.
fn resumable<'a>(entries: &'a [Entry], spec: &StageSpec, config: &Value, git: &GitState, roots: &Roots) -> Option<&'a Entry> {
    let e = entries.iter().rev().find(|e| e.stage == spec.stage)?;
    if e.params != spec.params || e.config_sha256 != crate::canonical::sha256_canonical(config) || &e.git != git {
        return None;
    }
    if e.env.get("hsx_version").and_then(Value::as_str) != Some(env!("CARGO_PKG_VERSION")) {
        return None;
    }
    let mut current = Vec::new();
    for (root, rel) in &spec.inputs {
        current.extend(record_path(roots, *root, rel).ok()?);
    }
    if current != e.inputs {
        return None;
    }
    let all_present = e.outputs.iter().all(|r| {
        roots
            .get(r.root)
            .and_then(|b| hash_file(&b.join(&r.path)).ok())
            .is_some_and(|(bytes, sha)| bytes == r.bytes && sha == r.sha256)
    });
    all_present.then_some(e)
}

/// The `prepare` stage: read, validate, deduplicate, split by context, write JSONL and statistics.
pub fn prepare(cfg: &Config, roots: &Roots, seed: u64) -> Result<StageOutcome, PipelineError> {
    let data_dir = roots.data.clone().expect("prepare always has a data root");
    let run_dir = roots.run.clone().expect("prepare always has a run root");
    let read_opts = data::ReadOptions { skip_invalid: cfg.data.skip_invalid, max_row_bytes: cfg.data.max_row_bytes };
    let mut all = Vec::new();
    let mut per_file = serde_json::Map::new();
    for f in &cfg.data.files {
        let path = data_dir.join(f);
        if !path.exists() {
            return Err(DataError::Missing(format!(
                "{} does not exist; run `hsx data fetch` to download the official CosmosQA files into {}, \
                 or set HSX_DATA_MIRROR to a directory holding cosmosqa/{f}",
                path.display(),
                cfg.data.dir
            ))
            .into());
        }
        let (_, sha) = hash_file(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        if let Some(expected) = data::known_hash(f) {
            if cfg.data.verify_known_hashes && expected != sha {
                return Err(DataError::HashMismatch { path, expected: expected.into(), actual: sha }.into());
            }
        }
        let r = data::read_file(&path, &read_opts)?;
        per_file.insert(
            f.clone(),
            json!({ "rows": r.rows, "examples": r.examples.len(), "skipped": r.skipped, "sha256": sha,
                    "known_hash": data::known_hash(f).map(|h| h == sha) }),
        );
        all.extend(r.examples);
    }
    let read = all.len();
    let duplicates = split::dedup(&mut all);
    let sizes = split::SplitSizes { train: cfg.split.train, val: cfg.split.val, test: cfg.split.test };
    let s = split::split_by_context(all, sizes, seed, cfg.split.allow_shrink)?;
    let out_dir = run_dir.join("prepare");
    std::fs::create_dir_all(&out_dir).map_err(|source| DataError::Io { path: out_dir.clone(), source })?;
    data::write_jsonl(&out_dir.join("human_train.jsonl"), &s.train)?;
    data::write_jsonl(&out_dir.join("human_val.jsonl"), &s.val)?;
    data::write_jsonl(&out_dir.join("human_test.jsonl"), &s.test)?;
    let st = json!({
        "train": stats::split_stats(&s.train),
        "val": stats::split_stats(&s.val),
        "test": stats::split_stats(&s.test),
    });
    let stats_path = out_dir.join("stats.json");
    let mut text = serde_json::to_string_pretty(&st).expect("stats serialise");
    text.push('\n');
    std::fs::write(&stats_path, text).map_err(|source| DataError::Io { path: stats_path.clone(), source })?;
    Ok(StageOutcome {
        outputs: ["human_train.jsonl", "human_val.jsonl", "human_test.jsonl", "stats.json"]
            .iter()
            .map(|f| (Root::Run, format!("prepare/{f}")))
            .collect(),
        metrics: json!({
            "files": per_file,
            "examples_read": read,
            "duplicates_dropped": duplicates,
            "train": s.train.len(),
            "val": s.val.len(),
            "test": s.test.len(),
            "shrunk": s.shrunk,
            "stats": st,
        }),
    })
}

/// The base model as a stage input.
fn base_input(cfg: &Config) -> (Root, String) {
    match &cfg.model {
        ModelSpec::HfDir { path } => (Root::Workspace, path.clone()),
        ModelSpec::Scratch { .. } => (Root::Run, "base-model/model".into()),
    }
}

/// The device a stage runs on, from `[runtime]`.
pub fn device_of(cfg: &Config) -> Result<tch::Device, PipelineError> {
    let name = match cfg.runtime.device {
        crate::config::Device::Cpu => "cpu",
        crate::config::Device::Cuda => "cuda",
        crate::config::Device::Auto => "auto",
    };
    crate::model::parse_device(name).map_err(|e| PipelineError::Usage(e.to_string()))
}

/// Where the base model lives for later stages: the HF directory, or the one `base-model` wrote.
pub fn base_model_dir(cfg: &Config, roots: &Roots) -> PathBuf {
    match &cfg.model {
        ModelSpec::HfDir { path } => roots.workspace.clone().expect("workspace root").join(path),
        ModelSpec::Scratch { .. } => roots.run.clone().expect("run root").join("base-model/model"),
    }
}

/// The `base-model` stage: the tiny/smoke profiles' own tokenizer and span-corruption pretraining, or
/// (base profile) a check that `models/flan-t5-base` loads as the flan-t5 architecture.
pub fn base_model(
    cfg: &Config,
    roots: &Roots,
    seed: u64,
    progress: &dyn crate::model::train::TrainProgress,
) -> Result<StageOutcome, PipelineError> {
    let device = device_of(cfg)?;
    let model_err = |e: crate::model::ModelError| PipelineError::Usage(e.to_string());
    match &cfg.model {
        ModelSpec::HfDir { path } => {
            let dir = base_model_dir(cfg, roots);
            if !dir.is_dir() {
                return Err(PipelineError::Usage(format!(
                    "{} does not exist; download the weights with `huggingface-cli download google/flan-t5-base --local-dir {path}`",
                    dir.display()
                )));
            }
            let m = crate::model::load_t5(&dir, device).map_err(model_err)?;
            let params = crate::model::train::parameter_count(&m.vs);
            Ok(StageOutcome { outputs: vec![], metrics: json!({ "source": "hf-dir", "path": path, "parameters": params, "config": m.model.cfg }) })
        }
        ModelSpec::Scratch { arch, tokenizer, pretrain } => {
            let run = roots.run.clone().expect("run root");
            let train: Vec<data::QaExample> = data::read_jsonl_as(&run.join("prepare/human_train.jsonl"))?;
            // The tokenizer learns from all train-split text; pretraining reads contexts only (once each).
            let mut seen = std::collections::HashSet::new();
            let contexts: Vec<String> = train.iter().filter(|e| seen.insert(e.context.clone())).map(|e| e.context.clone()).collect();
            let mut tok_texts = contexts.clone();
            tok_texts.extend(train.iter().map(|e| format!("{} {}", e.question, e.answer)));
            let out = run.join("base-model/model");
            let r = crate::model::pretrain::build_base_model(&tok_texts, arch, tokenizer, pretrain, seed, device, &out, progress)
                .map_err(model_err)?;
            let mut metrics = json!({
                "source": "scratch",
                "vocab_size": r.vocab_size,
                "examples": r.examples,
                "initial_loss": r.initial_loss,
                "pretrain": r.report,
            });
            // The file holds what a re-run reproduces bit for bit; the wall time lives in the entry.
            let wall = metrics["pretrain"].as_object_mut().and_then(|m| m.remove("wall_seconds"));
            let path = run.join("base-model/pretrain_metrics.json");
            std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(&metrics).expect("json")))
                .map_err(|source| DataError::Io { path, source })?;
            metrics["wall_seconds"] = wall.unwrap_or(Value::Null);
            Ok(StageOutcome {
                outputs: vec![(Root::Run, "base-model/model".into()), (Root::Run, "base-model/pretrain_metrics.json".into())],
                metrics,
            })
        }
    }
}

/// The `report` stage: REPORT.md rendered from the ledger's entries (up to `compare`), with the table
/// and plots, into `experiment.report_dir`.
pub fn report_stage(cfg: &Config, roots: &Roots, ledger_path: &Path) -> Result<StageOutcome, PipelineError> {
    let ledger = crate::ledger::store::read(ledger_path)?;
    let out = roots.workspace.clone().expect("workspace root").join(&cfg.experiment.report_dir);
    let run = roots.run.clone().expect("run root");
    let written = crate::report::write_report(&ledger, &run, &out, crate::report::DEFAULT_TEMPLATE)
        .map_err(|e| PipelineError::Usage(e.to_string()))?;
    let rel = |p: &PathBuf| {
        let name = p.strip_prefix(&out).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{}/{}", cfg.experiment.report_dir.trim_end_matches('/'), name)
    };
    let mut outputs: Vec<(Root, String)> = written.iter().map(|p| (Root::Workspace, rel(p))).collect();
    outputs.sort();
    Ok(StageOutcome { outputs, metrics: json!({"files": written.len(), "report": format!("{}/REPORT.md", cfg.experiment.report_dir)}) })
}
