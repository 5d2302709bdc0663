//! `hsx export`: the signed ledger's run, shown where researchers look — a Hugging Face dataset and
//! model cards ([`hf`]), runs in an MLflow tracking server ([`mlflow`]). Every export starts from a
//! ledger that verifies ([`load`]: the whole `hsx verify` audit, [`crate::audit::verify`]); every
//! number it writes is read from an entry, and every file it copies is checked against the SHA-256 its
//! entry recorded while it is copied. An export is a view of the ledger, never a second record: it
//! writes nothing under the recorded run directory, and the ledger stays the source of truth.
//!
//! ```text
//! hsx export --format hf --ledger runs/local/exp-42/ledger.json --out /tmp/exp-42-hf
//! hsx export --format mlflow --ledger runs/local/exp-42/ledger.json --tracking-uri http://127.0.0.1:5000
//! ```
use std::path::{Path, PathBuf};

use crate::ledger::head::{head_path_for, SignedHead};
use crate::ledger::verify::VerifyOptions;
use crate::ledger::{Entry, Header, LedgerError, TrustedKeys};

pub mod hf;
pub mod mlflow;
pub mod recorded;

/// An export format: one value of `hsx export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Hugging Face dataset (human, AI-contaminated and synthetic configs) and a model card per adapter.
    Hf,
    /// A parent run per ledger and a child run per stage instance in an MLflow tracking server.
    Mlflow,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Hf, Format::Mlflow];

    pub const fn name(self) -> &'static str {
        match self {
            Format::Hf => "hf",
            Format::Mlflow => "mlflow",
        }
    }

    pub fn parse(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            format!("unknown export format {s:?}; formats are: {}", Format::ALL.map(Format::name).join(", "))
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "ledger {path} does not verify, so hsx will not export it: {failure}; run `hsx verify --ledger {path}` \
         for the full report"
    )]
    Unverified { path: PathBuf, failure: String },
    #[error("{path}: {message}")]
    Out { path: PathBuf, message: String },
    #[error("the ledger has no `{stage}` entry; {hint}")]
    MissingStage { stage: String, hint: String },
    #[error("entry #{seq} ({stage}): {message}")]
    Entry { seq: u64, stage: String, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path} differs from what entry #{seq} ({stage}) recorded: {found}; refusing to export it")]
    Tampered { path: PathBuf, seq: u64, stage: String, found: String },
    #[error("MLflow {endpoint}: {message}")]
    Mlflow { endpoint: String, message: String },
}

impl ExportError {
    fn entry(e: &Entry, message: impl Into<String>) -> Self {
        ExportError::Entry { seq: e.seq, stage: e.stage.clone(), message: message.into() }
    }

    fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        ExportError::File { path: path.to_owned(), message: message.to_string() }
    }
}

/// A ledger that passed `hsx verify`, as it was read.
#[derive(Debug)]
pub struct Verified {
    pub path: PathBuf,
    pub header: Header,
    pub entries: Vec<Entry>,
    pub head: SignedHead,
}

/// Reads the ledger at `path` for export: it must pass `hsx verify` exactly as that command checks it
/// (format, chain, signatures, signed head, trusted signers, the pre-registration, the recorded files
/// present on disk, REPORT.md; the pinned head where given). The first failure refuses it.
pub fn load_verified(
    path: &Path,
    mirror: Option<&Path>,
    trusted: Option<&TrustedKeys>,
    expect_head: Option<&str>,
) -> Result<Verified, ExportError> {
    let opts = VerifyOptions {
        trusted: trusted.cloned(),
        require_artifacts: false,
        expect_head: expect_head.map(str::to_owned),
        structure_only: false,
    };
    let report = crate::audit::verify(path, mirror, &opts)?;
    if !report.ok {
        let failure = report.first_failure.map(|f| f.to_string()).unwrap_or_else(|| "a check failed".into());
        return Err(ExportError::Unverified { path: path.to_owned(), failure });
    }
    let ledger = crate::ledger::store::read(path)?;
    let head_path = head_path_for(path);
    let head = SignedHead::read(&head_path)
        .map_err(|m| ExportError::Unverified { path: path.to_owned(), failure: format!("signed head: {m}") })?
        .ok_or_else(|| ExportError::Unverified {
            path: path.to_owned(),
            failure: format!("no signed head {}", head_path.display()),
        })?;
    Ok(Verified { path: path.to_owned(), header: ledger.header, entries: ledger.entries, head })
}
