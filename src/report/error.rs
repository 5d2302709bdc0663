//! The report's errors, in a file of their own: `crate::error` names them, and the report reads the
//! stages' typed records, whose files name `crate::error`; kept apart, the two form no import circle.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report template {name}: {message}")]
    Template { name: String, message: String },
    #[error("the ledger has no `{0}` entry yet; run `hsx run` through the compare stage first")]
    MissingStage(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the synthesize entry counts rejections by {0:?}, a filter this hsx does not know")]
    UnknownFilter(String),
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
    /// The report directory belongs to another ledger, or its claim cannot be read.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// An entry's metrics that are not its stage's record (a renamed or missing key, a wrong type).
    #[error("ledger entry {seq} ({stage}): its metrics do not read as the stage's record: {message}")]
    Record { seq: u64, stage: String, message: String },
}
