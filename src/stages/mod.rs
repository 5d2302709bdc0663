//! The stages of the experiment, one file each, each holding its spec (inputs, parameters,
//! determinism class) beside its `run`. [`registry`] names and orders them; the executor
//! (`crate::pipeline`) records each as a signed ledger entry.
//!
//! | stage | file | reads | writes (under the run directory) |
//! |---|---|---|---|
//! | `prepare` | [`prepare`] | CosmosQA CSVs | `prepare/human_{train,val,test}.jsonl`, `stats.json` |
//! | `base-model` | [`base_model`] | human train (scratch) or `models/…` | `base-model/model` |
//! | `contaminate` | [`contaminate`] | human train, base model | `contaminate/ai_contaminated.jsonl` |
//! | `generator` | [`generator`] | human train, base model | `generator/adapter` |
//! | `synthesize` | [`synthesize`] | human train, base model, generator | `synthesize/synthetic.jsonl` |
//! | `train-A/B/C` | [`train`] | the arm's data, human val, base model | `train-X/adapter` |
//! | `evaluate-A/B/C` | [`evaluate`] | human test, `train-X/adapter` | `evaluate-X/{predictions,scores}.jsonl` |
//! | `compare` | [`compare`] | every `evaluate-X`, `train-X/train_metrics.json` | `compare/…` |
//! | `report` | [`report`] | the ledger, `compare/` | `report/REPORT.md` (workspace) |
//!
//! Seeds: every stage's seed is [`crate::ledger::stage_seed`]`(master seed, stage name)`; a stage never
//! draws from another's stream.
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::config::{Config, ModelSpec};
use crate::data::DataError;
use crate::error::PipelineError;
use crate::ledger::{Root, Roots, StageOutcome, StageSpec};
use crate::model::train::TrainProgress;
use crate::progress::Progress;

pub mod base_model;
pub mod compare;
pub mod contaminate;
pub mod evaluate;
pub mod generator;
pub mod prepare;
pub mod registry;
pub mod report;
pub mod synthesize;
pub mod train;

pub use registry::{Arm, Stage};

/// What a stage receives: the config, where things are, its seed, and where to report progress.
/// Stages take nothing else and reach nowhere else.
pub struct StageCtx<'a> {
    pub stage: Stage,
    pub cfg: &'a Config,
    pub roots: &'a Roots,
    /// The run directory (`runs/<experiment>` or a reproduction's).
    pub run_dir: PathBuf,
    /// The directory hsx runs in.
    pub workspace: PathBuf,
    /// This stage's seed (see the module docs).
    pub seed: u64,
    /// The ledger being written (the report stage renders from it).
    pub ledger: &'a Path,
    pub progress: &'a dyn Progress,
}

impl<'a> StageCtx<'a> {
    pub fn new(
        stage: Stage,
        cfg: &'a Config,
        roots: &'a Roots,
        seed: u64,
        ledger: &'a Path,
        progress: &'a dyn Progress,
    ) -> Result<Self, PipelineError> {
        let missing = |root: &str| PipelineError::Usage(format!("stage {stage} needs a {root} directory, and none was given"));
        Ok(StageCtx {
            stage,
            cfg,
            roots,
            run_dir: roots.run.clone().ok_or_else(|| missing("run"))?,
            workspace: roots.workspace.clone().ok_or_else(|| missing("workspace"))?,
            seed,
            ledger,
            progress,
        })
    }

    /// The device from `[runtime]`.
    pub fn device(&self) -> Result<tch::Device, PipelineError> {
        let name = match self.cfg.runtime.device {
            crate::config::Device::Cpu => "cpu",
            crate::config::Device::Cuda => "cuda",
            crate::config::Device::Auto => "auto",
        };
        Ok(crate::model::parse_device(name)?)
    }

    /// Where the base model lives: the HF directory, or the one `base-model` wrote.
    pub fn base_model(&self) -> PathBuf {
        match &self.cfg.model {
            ModelSpec::HfDir { path } => self.workspace.join(path),
            ModelSpec::Scratch { .. } => self.run_dir.join("base-model/model"),
        }
    }

    /// Progress of this stage's training or generation loop.
    pub fn trainer(&self) -> Box<dyn TrainProgress + 'a> {
        self.progress.trainer(self.stage.name())
    }

    /// A file under the run directory.
    pub fn run_path(&self, rel: &str) -> PathBuf {
        self.run_dir.join(rel)
    }

    /// This stage's own folder of the run directory, created.
    pub fn out_dir(&self) -> Result<PathBuf, PipelineError> {
        let dir = self.run_dir.join(self.stage.name());
        mkdir(&dir)?;
        Ok(dir)
    }
}

/// The stage's spec: what it reads, its slice of the config (its resume key) and its determinism class.
pub fn spec(stage: Stage, cfg: &Config) -> StageSpec {
    match stage {
        Stage::Prepare => prepare::spec(cfg),
        Stage::BaseModel => base_model::spec(cfg),
        Stage::Contaminate => contaminate::spec(cfg),
        Stage::Generator => generator::spec(cfg),
        Stage::Synthesize => synthesize::spec(cfg),
        Stage::Train(arm) => train::spec(cfg, arm),
        Stage::Evaluate(arm) => evaluate::spec(cfg, arm),
        Stage::Compare => compare::spec(cfg),
        Stage::Report => report::spec(cfg),
    }
}

/// Runs the stage's body (the work between hashing its inputs and hashing its outputs).
pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    crate::runtime::seed(ctx.seed);
    match ctx.stage {
        Stage::Prepare => prepare::run(ctx),
        Stage::BaseModel => base_model::run(ctx),
        Stage::Contaminate => contaminate::run(ctx),
        Stage::Generator => generator::run(ctx),
        Stage::Synthesize => synthesize::run(ctx),
        Stage::Train(arm) => train::run(ctx, arm),
        Stage::Evaluate(arm) => evaluate::run(ctx, arm),
        Stage::Compare => compare::run(ctx),
        Stage::Report => report::run(ctx),
    }
}

/// The base model as a stage input.
pub fn base_input(cfg: &Config) -> (Root, String) {
    match &cfg.model {
        ModelSpec::HfDir { path } => (Root::Workspace, path.clone()),
        ModelSpec::Scratch { .. } => (Root::Run, "base-model/model".into()),
    }
}

/// The human splits `prepare` writes, as stage inputs.
pub fn human(split: &str) -> (Root, String) {
    (Root::Run, format!("prepare/human_{split}.jsonl"))
}

/// Writes pretty JSON with a trailing newline.
pub fn write_json(path: &Path, v: &Value) -> Result<(), PipelineError> {
    std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(v).expect("a JSON value serialises")))
        .map_err(|source| DataError::Io { path: path.to_owned(), source }.into())
}

pub fn mkdir(path: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(path).map_err(|source| DataError::Io { path: path.to_owned(), source }.into())
}

/// Any row with context, question and answer (human, contaminated and synthetic files alike).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct QaLike {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
}
