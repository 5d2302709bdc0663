//! The stage recorder: hash inputs, run the stage, re-hash inputs, hash outputs, sign, append.
//!
//! Every pipeline stage goes through [`Recorder::record`]. An input that changes while its stage runs
//! is an error, not a silent record. The recorder knows nothing of libtorch: the environment is handed
//! in as JSON by the caller.
use serde_json::Value;

use super::files::{record_path, FileRecord, Root, Roots};
use super::{instance_seed, Append, Determinism, Entry, GitState, LedgerError, Seeds};

/// What a stage is, before it runs.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub stage: String,
    /// The stage's slice of the config.
    pub params: Value,
    /// Files and directories the stage reads, relative to their roots.
    pub inputs: Vec<(Root, String)>,
    pub determinism: Determinism,
}

/// What a stage reports when it finishes.
#[derive(Debug, Clone, Default)]
pub struct StageOutcome {
    /// Files and directories it wrote, relative to their roots.
    pub outputs: Vec<(Root, String)>,
    pub metrics: Value,
}

impl StageOutcome {
    /// The outcome of a stage whose metrics are the typed record `metrics`.
    pub fn of<T: serde::Serialize>(
        outputs: Vec<(Root, String)>,
        metrics: &T,
    ) -> Result<Self, crate::error::PipelineError> {
        Ok(Self { outputs, metrics: serde_json::to_value(metrics).map_err(crate::error::PipelineError::Record)? })
    }
}

/// Passed to the stage body.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub stage: String,
    pub seed: u64,
    pub master_seed: u64,
}

pub struct Recorder<'a> {
    pub writer: &'a mut dyn Append,
    pub roots: Roots,
    pub config: Value,
    pub master_seed: u64,
    pub git: GitState,
    /// Captures the environment for an entry (OS, CPU, libtorch, threads, ...).
    pub env: Box<dyn Fn() -> Value + 'a>,
}

impl Recorder<'_> {
    /// Runs `body` as stage `spec.stage` and appends its signed entry. The stage's error (converted with
    /// `map_err`) is returned unchanged and nothing is appended.
    pub fn record<E>(
        &mut self,
        spec: StageSpec,
        body: impl FnOnce(&StageContext) -> Result<StageOutcome, E>,
    ) -> Result<Result<Entry, E>, LedgerError> {
        let before = self.hash_all(&spec.inputs)?;
        let ctx = StageContext {
            stage: spec.stage.clone(),
            seed: instance_seed(self.master_seed, &spec.stage),
            master_seed: self.master_seed,
        };
        let started = super::now_utc();
        let outcome = match body(&ctx) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        let finished = super::now_utc();
        let after = self.hash_all(&spec.inputs)?;
        for (b, a) in before.iter().zip(after.iter()) {
            if b != a {
                return Err(LedgerError::InputChanged {
                    stage: spec.stage.clone(),
                    path: format!("{}:{}", b.root, b.path),
                    before: b.sha256.clone(),
                    after: a.sha256.clone(),
                });
            }
        }
        if before.len() != after.len() {
            return Err(LedgerError::Stage {
                stage: spec.stage.clone(),
                message: "the set of input files changed while the stage ran".into(),
            });
        }
        let outputs = self.hash_all(&outcome.outputs)?;
        let entry = Entry {
            seq: 0,
            stage: spec.stage.clone(),
            experiment: String::new(),
            header_sha256: String::new(),
            prev: String::new(),
            started,
            finished,
            git: self.git.clone(),
            env: (self.env)(),
            seeds: Seeds { master: self.master_seed, stage: ctx.seed },
            params: spec.params,
            config: self.config.clone(),
            config_sha256: crate::canonical::sha256_canonical(&self.config),
            inputs: before,
            outputs,
            determinism: spec.determinism,
            metrics: outcome.metrics,
            hash: String::new(),
            signature: String::new(),
        };
        Ok(Ok(self.writer.append(entry)?))
    }

    fn hash_all(&self, items: &[(Root, String)]) -> Result<Vec<FileRecord>, LedgerError> {
        let mut out = Vec::new();
        for (root, rel) in items {
            out.extend(record_path(&self.roots, *root, rel)?);
        }
        Ok(out)
    }
}
