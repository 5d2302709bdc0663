//! The library's error for running, resuming and reproducing stages. Every cause is typed and kept as
//! the error's source, so `{:#}` prints the whole chain; the binary maps errors to exit codes in one
//! place (`cli::exit_code`).
use crate::config::ConfigError;
use crate::data::DataError;
use crate::ledger::LedgerError;
use crate::model::ModelError;
use crate::report::error::ReportError;
use crate::stages::registry::UnknownStage;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file that could not be written or read safely (see `crate::fsx`).
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    UnknownStage(#[from] UnknownStage),
    /// A stage found its inputs inconsistent (e.g. score files that cover different examples).
    #[error("stage {stage}: {message}")]
    Stage { stage: &'static str, message: String },
    #[error("cannot configure libtorch: {0}")]
    Runtime(String),
    #[error("the config recorded in {ledger} does not parse with this hsx")]
    RecordedConfig {
        ledger: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The Slurm executor: a job that failed (with its log), or Slurm that cannot be reached.
    #[error("slurm: {0}")]
    Slurm(String),
    /// A stage's typed record that does not serialise as JSON (a map with non-string keys).
    #[error("a stage record does not serialise as JSON")]
    Record(#[source] serde_json::Error),
    /// A request that cannot be carried out as given (a non-empty output directory, a missing stage).
    #[error("{0}")]
    Usage(String),
}
