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

    /// This stage's own folder of the run directory, created (a real directory: a symbolic link there is
    /// refused).
    pub fn out_dir(&self) -> Result<PathBuf, PipelineError> {
        let dir = self.run_dir.join(self.instance.name());
        crate::fsx::create_dirs(&self.run_dir, &dir).map_err(DataError::from)?;
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

/// Writes pretty JSON with a trailing newline to `path` below `root` (the run directory), through
/// [`crate::fsx::write`].
pub fn write_json(root: &Path, path: &Path, v: &Value) -> Result<(), PipelineError> {
    let text = format!("{}\n", serde_json::to_string_pretty(v).expect("a JSON value serialises"));
    Ok(crate::fsx::write(root, path, text.as_bytes()).map_err(DataError::from)?)
}

/// Writes a stage's typed record as pretty JSON. It goes through a JSON value, whose keys are sorted, so
/// the bytes do not depend on the order of the struct's fields.
pub fn write_record<T: serde::Serialize>(root: &Path, path: &Path, record: &T) -> Result<(), PipelineError> {
    write_json(root, path, &serde_json::to_value(record).map_err(PipelineError::Record)?)
}

/// A stage's parameters (its resume key: a typed struct of config parts) as the JSON value its spec holds.
pub fn params<T: serde::Serialize>(params: &T) -> Value {
    // Config parts are structs and maps with string keys, which always serialise (as `json!` assumed).
    serde_json::to_value(params).expect("a stage's parameters serialise as JSON")
}

/// Deserialises a record field that older entries lack and newer ones may record as null, into
/// `Option<Option<T>>`: `None` when absent, `Some(None)` when null. With
/// `#[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]` the record
/// reads and writes both forms exactly as the ledger holds them (the report tells them apart).
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Any row with context, question and answer (human, contaminated and synthetic files alike).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct QaLike {
    pub id: String,
    pub context: String,
    pub question: String,
    pub answer: String,
}
