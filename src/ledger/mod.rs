//! The provenance ledger: signed, hash-chained, append-only records of every stage of an experiment.
//!
//! Follows the shape of transparency logs (Certificate Transparency, Rekor): each entry commits to its
//! predecessor's hash, and every entry is signed, so any edit, removal, insertion or reordering is
//! detectable offline with nothing but the ledger file and (optionally) a list of trusted keys.
//!
//! ```text
//! hsx keygen
//! hsx run --config configs/smoke.toml --ledger ledger/smoke.json
//! hsx verify --ledger ledger/smoke.json --trusted-keys ledger/trusted_keys
//! ```
//!
//! # File format (version 1)
//!
//! One JSON document `{"header": {...}, "entries": [...]}`.
//!
//! * `header`: `format` = `"hsx-ledger"`, `version` = 1, `experiment` (id), `run_dir` (relative path of
//!   the run directory, e.g. `runs/exp-42`), `created` (UTC, RFC 3339), and `signer` =
//!   `{"algorithm": "ed25519", "public_key": <64 hex>, "key_id": "sha256:<hex of sha256(public key bytes)>"}`.
//! * each entry: `seq` (0, 1, ...), `stage`, `experiment` (= header's), `header_sha256` (canonical hash
//!   of the header, so the header cannot be edited either), `prev` (the previous entry's `hash`; 64 zeros
//!   for the first), `started`/`finished` (UTC, RFC 3339), `git`, `env`, `seeds` (`master`, `stage`),
//!   `params` (the stage's slice of the config), `config` (the whole config) and `config_sha256` (its
//!   canonical hash), `inputs`/`outputs` (`root`, `path`, `bytes`, `sha256` per file; directories are
//!   expanded to their files in sorted order), `determinism`, `metrics`, `hash`, `signature`.
//!
//! # Hash and signature
//!
//! `hash` = lowercase hex SHA-256 of the canonical JSON (defined in [`crate::canonical`]: sorted keys,
//! no whitespace, shortest round-trip floats) of the entry object *as stored*, with the two members
//! `hash` and `signature` removed. `signature` = lowercase hex of the 64-byte ed25519 signature (RFC 8032,
//! ed25519-dalek) over the 32 raw bytes of that SHA-256 digest, by the header's signer key.
//!
//! # File roots
//!
//! A file path is relative to a named root and may not be absolute or contain `..`: `run` (the run
//! directory), `data` (the CosmosQA data directory: `$HSX_DATA_MIRROR/cosmosqa` or the config's
//! `data.dir`), `workspace` (the directory `hsx` runs in, e.g. for `models/flan-t5-base`).
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

pub mod files;
pub mod keys;
pub mod recorder;
pub mod store;
pub mod verify;

pub use files::{FileRecord, Root, Roots};
pub use keys::{KeyError, SigningKeyFile, TrustedKeys};
pub use recorder::{Recorder, StageOutcome, StageSpec};
pub use store::LedgerWriter;

pub const FORMAT: &str = "hsx-ledger";
pub const VERSION: u32 = 1;
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Ledgers larger than this are refused before parsing (a ledger is untrusted input).
pub const MAX_LEDGER_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ledger {path} is not a valid hsx ledger: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "ledger {path} is locked by another hsx process (lock file {lock}{holder}); \
         wait for it to finish, or remove the lock file if no hsx process is running"
    )]
    Locked { path: PathBuf, lock: PathBuf, holder: String },
    #[error("ledger {path} belongs to experiment {found:?}, but the config says {expected:?}")]
    WrongExperiment { path: PathBuf, found: String, expected: String },
    #[error(
        "ledger {path} is signed by key {found}, but your signing key is {expected}; a ledger has one signer: \
         append with the key that started it, start your own ledger (hsx run --ledger ledger/<name>.json, or \
         make run LEDGER=ledger/<name>.json), or check this one with hsx verify / hsx reproduce"
    )]
    WrongSigner { path: PathBuf, found: String, expected: String },
    #[error("stage {stage}: input {path} changed while the stage ran (sha256 {before} before, {after} after)")]
    InputChanged { stage: String, path: String, before: String, after: String },
    #[error("stage {stage}: {message}")]
    Stage { stage: String, message: String },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    pub algorithm: String,
    pub public_key: String,
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub experiment: String,
    pub run_dir: String,
    pub created: String,
    pub signer: Signer,
}

impl Header {
    pub fn sha256(&self) -> String {
        crate::canonical::sha256_of(self).expect("header serialises")
    }
}

/// Git state of the code that ran a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GitState {
    Repository {
        commit: String,
        dirty: bool,
        /// sha256 of `git diff HEAD` (tracked files, hsx's own output folders excluded) when dirty.
        diff_sha256: Option<String>,
    },
    NoRepository,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seeds {
    pub master: u64,
    pub stage: u64,
}

/// How exactly a re-run is expected to match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Determinism {
    /// Same machine, same threads: every output byte-identical.
    Bitwise,
    /// Outputs may differ within `epsilon` on `metric`.
    Tolerance { metric: String, epsilon: f64 },
    Nondeterministic { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub seq: u64,
    pub stage: String,
    pub experiment: String,
    pub header_sha256: String,
    pub prev: String,
    pub started: String,
    pub finished: String,
    pub git: GitState,
    pub env: Value,
    pub seeds: Seeds,
    pub params: Value,
    pub config: Value,
    pub config_sha256: String,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
    pub determinism: Determinism,
    pub metrics: Value,
    pub hash: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub header: Header,
    pub entries: Vec<Entry>,
}

/// The canonical hash of an entry given as raw JSON (members `hash` and `signature` left out).
pub fn entry_hash_of_value(entry: &Value) -> String {
    let mut v = entry.clone();
    if let Value::Object(map) = &mut v {
        map.remove("hash");
        map.remove("signature");
    }
    crate::canonical::sha256_canonical(&v)
}

impl Entry {
    /// The canonical hash of this entry (its own `hash` and `signature` are ignored).
    pub fn compute_hash(&self) -> String {
        entry_hash_of_value(&serde_json::to_value(self).expect("entry serialises"))
    }
}

/// Derives a stage's seed from the master seed and the stage name: the first 8 bytes (little endian)
/// of sha256(master seed as 8 little-endian bytes ‖ UTF-8 stage name).
pub fn stage_seed(master: u64, stage: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(master.to_le_bytes());
    h.update(stage.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Current UTC time, RFC 3339 with microseconds.
pub fn now_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&fmt).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_seeds_differ_by_stage_and_master() {
        assert_ne!(stage_seed(42, "prepare"), stage_seed(42, "train-A"));
        assert_ne!(stage_seed(42, "prepare"), stage_seed(43, "prepare"));
        assert_eq!(stage_seed(42, "prepare"), stage_seed(42, "prepare"));
    }
}
