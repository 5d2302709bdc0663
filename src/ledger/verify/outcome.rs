//! What `hsx verify` reports: its options, each failure (entry, stage, field, message), each entry's
//! verdict and the report as a whole. Shared by the reader (`super`) and the checks (`super::checker`).
use serde::Serialize;
use time::OffsetDateTime;

use super::super::head::Head;
use super::super::keys::TrustedKeys;
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub trusted: Option<TrustedKeys>,
    pub require_artifacts: bool,
    /// `--expect-head`: the ledger must contain an entry with this hash (64 lowercase hex).
    pub expect_head: Option<String>,
    /// Check the ledger itself only, not the files it records (used when a ledger is read for use).
    pub structure_only: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// Entry index (its position in the file); `None` for the header or the ledger as a whole.
    pub entry: Option<usize>,
    pub stage: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.entry, &self.stage) {
            (Some(i), Some(s)) => write!(f, "entry {i} ({s}), field `{}`: {}", self.field, self.message),
            (Some(i), None) => write!(f, "entry {i}, field `{}`: {}", self.field, self.message),
            (None, _) if self.field.starts_with("header") => {
                write!(f, "header, field `{}`: {}", self.field, self.message)
            }
            _ => write!(f, "ledger, `{}`: {}", self.field, self.message),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryVerdict {
    pub index: usize,
    pub seq: Option<u64>,
    pub stage: Option<String>,
    /// "ok", "missing" (ok, but some artifacts are not on disk) or "failed".
    pub verdict: String,
    pub missing: Vec<String>,
    pub superseded: usize,
    pub failure: Option<Failure>,
}

/// Where the roots were found (for the report: a reader sees which directories were checked).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RootsShown {
    pub run: Option<String>,
    pub data: Option<String>,
    pub workspace: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ledger: String,
    pub version: Option<u32>,
    pub experiment: Option<String>,
    pub signer: Option<String>,
    pub entries: Vec<EntryVerdict>,
    /// The last entry (sequence number and hash): what a report or `--expect-head` pins.
    pub head: Option<Head>,
    /// File records in the ledger (inputs and outputs of every entry).
    pub recorded_artifacts: usize,
    /// File records compared with the file on disk (size and SHA-256).
    pub checked_artifacts: usize,
    /// File records whose file is not on disk (or whose root is not available here).
    pub missing_artifacts: usize,
    /// File records not checked because a later entry wrote the same file again.
    pub superseded_artifacts: usize,
    pub roots: RootsShown,
    /// Things a reader should know that are not failures (e.g. a head file behind the ledger).
    pub notes: Vec<String>,
    /// The first failing check, if any (the earliest entry's).
    pub first_failure: Option<Failure>,
    pub ok: bool,
}

pub(super) fn fail(
    entry: Option<usize>,
    stage: Option<&str>,
    field: impl Into<String>,
    message: impl Into<String>,
) -> Failure {
    Failure { entry, stage: stage.map(str::to_owned), field: field.into(), message: message.into() }
}

pub(super) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
