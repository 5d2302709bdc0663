//! What every stage receives ([`StageCtx`]) and the small helpers stages share. Stages import this
//! file and the registry, never `stages/mod.rs`, so the dispatcher and the stages form no circle.
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::config::{Config, ModelSpec};
use crate::data::DataError;
use crate::error::PipelineError;
use crate::ledger::{Root, Roots};
use crate::model::train::TrainProgress;
use crate::progress::Progress;

pub use super::registry::{Arm, Instance, Model, Stage};

/// What a stage receives: the config, where things are, its seed, and where to report progress.
/// Stages take nothing else and reach nowhere else.
pub struct StageCtx<'a> {
    pub stage: Stage,
    /// The stage and its replicate: its name names the stage's folder of the run directory.
    pub instance: Instance,
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
    /// A self-contained run (`hsx run --out`, every reproduction): the report goes under the run
    /// directory and is recorded under the `run` root; otherwise under the workspace.
    pub self_contained: bool,
}

impl<'a> StageCtx<'a> {
    pub fn new(
        instance: Instance,
        cfg: &'a Config,
        roots: &'a Roots,
        seed: u64,
        ledger: &'a Path,
        progress: &'a dyn Progress,
    ) -> Result<Self, PipelineError> {
        let missing =
            |root: &str| PipelineError::Usage(format!("stage {instance} needs a {root} directory, and none was given"));
        Ok(StageCtx {
            stage: instance.stage,
            instance,
            cfg,
            roots,
            run_dir: roots.run.clone().ok_or_else(|| missing("run"))?,
            workspace: roots.workspace.clone().ok_or_else(|| missing("workspace"))?,
            seed,
            ledger,
            progress,
            self_contained: false,
        })
    }

    /// The device from `[runtime]`.
    pub fn device(&self) -> Result<tch::Device, PipelineError> {
        Ok(crate::model::parse_device(self.cfg.runtime.device.name())?)
    }

    /// Where the base model lives: the HF directory, or the one `base-model` wrote.
    pub fn base_model(&self) -> PathBuf {
        match &self.cfg.model {
            ModelSpec::HfDir { path } => self.workspace.join(path),
            ModelSpec::Scratch { .. } | ModelSpec::Random { .. } => self.run_dir.join("base-model/model"),
        }
    }

    /// Progress of this stage's training or generation loop.
    pub fn trainer(&self) -> Box<dyn TrainProgress + 'a> {
        self.progress.trainer(&self.instance.name())
    }

    /// A file under the run directory.
    pub fn run_path(&self, rel: &str) -> PathBuf {
        self.run_dir.join(rel)
    }

    /// This stage's own folder of the run directory, created.
    pub fn out_dir(&self) -> Result<PathBuf, PipelineError> {
        let dir = self.run_dir.join(self.instance.name());
        mkdir(&dir)?;
        Ok(dir)
    }
}

/// The base model as stage inputs: for an HF directory (flan-t5-base), the files hsx reads from it
/// ([`crate::model::hub::MODEL_FILES`]: its identity; other weight formats, `.cache/` and the rest of a
/// download are not inputs); for a model `base-model` wrote, that directory, whole.
pub fn base_inputs(cfg: &Config) -> Vec<(Root, String)> {
    match &cfg.model {
        ModelSpec::HfDir { path } => crate::model::hub::MODEL_FILES
            .iter()
            .map(|f| (Root::Workspace, format!("{}/{f}", path.trim_end_matches('/'))))
            .collect(),
        ModelSpec::Scratch { .. } | ModelSpec::Random { .. } => vec![(Root::Run, "base-model/model".into())],
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

/// Writes a stage's typed record as pretty JSON. It goes through a JSON value, whose keys are sorted, so
/// the bytes do not depend on the order of the struct's fields.
pub fn write_record<T: serde::Serialize>(path: &Path, record: &T) -> Result<(), PipelineError> {
    write_json(path, &serde_json::to_value(record).map_err(PipelineError::Record)?)
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
