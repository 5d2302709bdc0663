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
//! # File format (version 2; version 1 is still read)
//!
//! One JSON document `{"header": {...}, "entries": [...]}`, with no duplicate member names anywhere.
//!
//! * `header`: `format` = `"hsx-ledger"`, `version` = 2, `experiment` (id), `run_dir` and `workspace`
//!   (see *Locations* below), `created` (UTC, RFC 3339), and `signer` = `{"algorithm": "ed25519",
//!   "public_key": <64 lowercase hex>, "key_id": "sha256:<hex of sha256(public key bytes)>"}`.
//! * each entry: `seq` (0, 1, ...), `stage`, `experiment` (= header's), `header_sha256` (canonical hash
//!   of the header, so the header cannot be edited either), `prev` (the previous entry's `hash`; 64 zeros
//!   for the first), `started`/`finished` (UTC, RFC 3339; `started ≤ finished`, and no entry starts
//!   before its predecessor finished or before the header was created), `git`, `env`, `seeds`
//!   (`master`, `stage`: decimal strings in version 2, since they exceed 2^53), `params` (the stage's
//!   slice of the config), `config` (the whole config) and `config_sha256` (its canonical hash),
//!   `inputs`/`outputs` (`root`, `path`, `bytes`, `sha256` per file; directories are expanded to their
//!   files in sorted order), `determinism`, `metrics`, `hash`, `signature`.
//!
//! Every number in an entry lies in I-JSON's exact range (integers of magnitude ≤ 2^53 − 1, RFC 7493),
//! so that any RFC 8785 implementation can canonicalise it: u64 values (seeds, also a training recipe's
//! `seed` in `metrics`) are decimal strings, and sealing refuses an entry holding a number outside
//! that range, naming its path ([`crate::canonical::first_non_i_json_number`]). Readers accept the
//! numeric form too: version-2 ledgers sealed before that rule hold such seeds as numbers, and verify.
//!
//! # Hash and signature
//!
//! Version 2: `hash` = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical form (see
//! [`crate::canonical`]) of the entry object *as stored*, with the members `hash` and `signature`
//! removed. `signature` = lowercase hex (the only accepted spelling) of the ed25519 signature (RFC 8032,
//! verified strictly) over the DSSE pre-authentication encoding
//! `PAE("application/vnd.hsx.ledger-entry+json; version=2", <those canonical bytes>)`, by the header's
//! signer key. The payload type separates the domains: an entry signature can never be replayed as a
//! signed head or anything else the key signs.
//!
//! Version 1 (read only): the hash used the version-1 canonical form
//! ([`crate::canonical::to_legacy_v1_string`]) and the signature was over the 32 raw digest bytes.
//! A version-1 ledger verifies as before, but hsx never appends to one.
//!
//! # Signed head (rollback and truncation)
//!
//! Each append also writes `<ledger>.head.json` (for `exp-42.json`: `exp-42.head.json`) next to the
//! ledger: `{"payload_type", "experiment", "header_sha256", "entries", "seq", "hash", "signature"}`,
//! signed over `PAE("application/vnd.hsx.ledger-head+json; version=2", JCS(all members but signature))`.
//! `hsx verify` fails a version-2 ledger whose head file is missing, badly signed, or names an entry the
//! ledger does not have (the file was cut or forked). The head also travels outside the machine: the
//! report names the last sequence number and hash it was rendered from ([`Ledger::head`]), git history
//! anchors that, and `hsx verify --expect-head <hash>` fails unless the ledger contains that entry.
//!
//! # Locations
//!
//! Version 2 records where the run directory and the workspace are *relative to the directory that holds
//! the ledger file* (`run_dir` = `../runs/exp-42` and `workspace` = `..` for `ledger/exp-42.json`;
//! `.` for a reproduction ledger written inside its own output directory). Such a location may begin
//! with `..` segments but has no other `.`/`..`/empty segment, no backslash and is never absolute, so a
//! ledger and its tree verify wherever they are copied, from any working directory, and any
//! `hsx reproduce --out` (absolute, `./x`, `../x`) yields a valid header. Version 1 recorded `run_dir`
//! relative to an unnamed workspace; it is resolved as the nearest directory at or above the ledger's
//! that holds `run_dir`, else the nearest git work tree root above the ledger, else the ledger
//! directory's parent. Locations are where hsx *reads*; nothing is written through them except by the
//! writer that created the ledger (which checks they still name its own run directory).
//!
//! # File roots
//!
//! A recorded file path is relative to a named root and may not be absolute or contain `.`, `..` or
//! empty segments: `run` (the run directory), `data` (the CosmosQA data directory:
//! `$HSX_DATA_MIRROR/cosmosqa` or the config's `data.dir` under the workspace), `workspace` (e.g.
//! `models/flan-t5-base`, the report directory). Paths are checked when a ledger is read, before
//! anything is opened; only regular files inside their root are opened, never a FIFO or device.
//!
//! # One writer
//!
//! The writer locks `<ledger>.lock` next to the *resolved* ledger path (a symlink to a ledger shares
//! its lock and is written through, never replaced), and claims the run directory: `.hsx-run.lock`
//! held for the writer's lifetime, and `.hsx-ledger` recording the header hash and ledger path of the
//! one ledger the directory belongs to; a second ledger is refused with both named. The executor claims
//! the report directory the same way (`.hsx-report.lock`, `.hsx-ledger`; see `claim`). Every file is
//! written through `crate::fsx`: nothing is written through a symbolic link or a hard link, or outside
//! its directory.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

pub mod bench;
pub mod claim;
pub mod files;
pub mod fragment;
pub mod head;
pub mod keys;
pub mod location;
pub mod recorder;
pub mod spelling;
pub mod store;
pub mod verify;

pub use files::{FileRecord, Root, Roots};

/// Where a recorded stage's entry goes: the ledger ([`LedgerWriter`]), or a fragment that a Slurm job
/// writes and the driver later joins into the ledger ([`fragment::FragmentWriter`]). `append` fills in
/// the entry's position, hash and signature and returns it as written.
pub trait Append {
    fn append(&mut self, entry: Entry) -> Result<Entry, LedgerError>;
}
pub use head::{Head, SignedHead};
pub use keys::{KeyError, SigningKeyFile, TrustedKeys};
pub use recorder::{Recorder, StageOutcome, StageSpec};
pub use store::{open_verified, LedgerWriter, Locations};

pub const FORMAT: &str = "hsx-ledger";
/// The format version hsx writes.
pub const VERSION: u32 = 2;
/// The format versions hsx reads.
pub const READ_VERSIONS: [u32; 2] = [1, 2];
/// DSSE payload type of a version-2 entry signature.
pub const ENTRY_PAYLOAD_TYPE: &str = "application/vnd.hsx.ledger-entry+json; version=2";
/// DSSE payload type of a signed head.
pub const HEAD_PAYLOAD_TYPE: &str = "application/vnd.hsx.ledger-head+json; version=2";
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Ledgers larger than this are refused before parsing (a ledger is untrusted input).
pub const MAX_LEDGER_BYTES: u64 = crate::fsx::Limit::LEDGER.bytes;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Fragment(#[from] fragment::FragmentError),
    /// A file that could not be written or read safely (see `crate::fsx`).
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
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
    #[error("ledger {path} does not verify, so hsx will not use it: {failure}; run `hsx verify --ledger {path}` for the full report")]
    Unverified { path: PathBuf, failure: Box<verify::Failure> },
    #[error("{path}: {message}")]
    RunDir { path: PathBuf, message: String },
    #[error(
        "stage {stage}: the entry's member {path} is the number {number}, outside I-JSON's exact range \
         (integers of magnitude at most 2^53 - 1), which RFC 8785 tools cannot canonicalise; hsx records such \
         a value as a decimal string (see ledger::u64_text), so this is a bug in the code that built the entry"
    )]
    NotIJson { stage: String, path: String, number: String },
    #[error(
        "ledger {path} is format version {version}, which this hsx verifies but never appends to (it writes version {VERSION}); \
         start a new ledger (hsx run --ledger ledger/<name>.json, or make run LEDGER=ledger/<name>.json) and check this one \
         with hsx verify / hsx reproduce"
    )]
    ReadOnly { path: PathBuf, version: u32 },
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
    /// v2: the run directory relative to the ledger file's directory; v1: relative to the workspace.
    pub run_dir: String,
    /// v2 only: the workspace relative to the ledger file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub created: String,
    pub signer: Signer,
}

impl Header {
    /// The header's canonical hash, in the canonical form of its version.
    pub fn sha256(&self) -> String {
        let v = serde_json::to_value(self).expect("header serialises");
        if self.version == 1 {
            crate::canonical::sha256_legacy_v1(&v)
        } else {
            crate::canonical::sha256_canonical(&v)
        }
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
    #[serde(with = "u64_text")]
    pub master: u64,
    #[serde(with = "u64_text")]
    pub stage: u64,
}

/// A u64 written as a decimal string (RFC 8785 numbers are doubles: exact only up to 2^53); read
/// from a canonical decimal string or, as older ledgers and files wrote it, a JSON number. For
/// `#[serde(with = "crate::ledger::u64_text")]` (`serialize_with` on a type that is only written).
pub mod u64_text {
    use serde::{de, Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(n),
            Either::S(s)
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')) =>
            {
                s.parse().map_err(|_| de::Error::custom(format!("{s:?} does not fit 64 bits")))
            }
            Either::S(s) => Err(de::Error::custom(format!("{s:?} is not a canonical decimal integer"))),
        }
    }
}

/// How exactly a re-run is expected to match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Determinism {
    /// Same machine, same threads: every output byte-identical.
    Bitwise,
    /// Outputs may differ within `epsilon` on `metric`.
    Tolerance {
        metric: String,
        epsilon: f64,
    },
    Nondeterministic {
        reason: String,
    },
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

/// The canonical bytes of an entry given as raw JSON (members `hash` and `signature` left out), in the
/// canonical form of ledger format `version`.
pub fn entry_canonical_bytes(entry: &Value, version: u32) -> String {
    let stripped;
    let v = match entry {
        Value::Object(map) if map.contains_key("hash") || map.contains_key("signature") => {
            let mut m = map.clone();
            m.remove("hash");
            m.remove("signature");
            stripped = Value::Object(m);
            &stripped
        }
        other => other,
    };
    if version == 1 {
        crate::canonical::to_legacy_v1_string(v)
    } else {
        crate::canonical::to_canonical_string(v)
    }
}

/// The (version 2) canonical hash of an entry given as raw JSON (`hash` and `signature` left out).
pub fn entry_hash_of_value(entry: &Value) -> String {
    crate::canonical::sha256_hex(entry_canonical_bytes(entry, VERSION).as_bytes())
}

/// Checks an entry's signature: version 2 over `PAE(ENTRY_PAYLOAD_TYPE, canonical bytes)`, version 1
/// over the raw digest. Only lowercase hex is accepted.
pub fn verify_entry_signature(
    version: u32,
    public: &ed25519_dalek::VerifyingKey,
    canonical: &str,
    hash: &str,
    signature: &str,
) -> Result<(), String> {
    if version == 1 {
        keys::verify_hash(public, hash, signature)
    } else {
        keys::verify_bytes(public, &crate::canonical::pae(ENTRY_PAYLOAD_TYPE, canonical.as_bytes()), signature)
    }
}

/// Fills in `hash` and `signature` (version 2) of an entry given as raw JSON, as the writer would:
/// for tools and tests that build or re-sign entries by hand. Unlike [`Entry::seal`] it does not
/// refuse numbers outside I-JSON's range, so a test can build an entry as older hsx versions sealed it.
pub fn seal_value(entry: &mut Value, key: &SigningKeyFile) {
    let canonical = entry_canonical_bytes(entry, VERSION);
    let hash = crate::canonical::sha256_hex(canonical.as_bytes());
    let signature = key.sign_bytes(&crate::canonical::pae(ENTRY_PAYLOAD_TYPE, canonical.as_bytes()));
    if let Value::Object(m) = entry {
        m.insert("hash".into(), Value::String(hash));
        m.insert("signature".into(), Value::String(signature));
    }
}

impl Entry {
    /// The (version 2) canonical hash of this entry (its own `hash` and `signature` are ignored).
    pub fn compute_hash(&self) -> String {
        entry_hash_of_value(&serde_json::to_value(self).expect("entry serialises"))
    }

    /// Fills in `hash` and `signature` (version 2), refusing an entry that holds a number outside
    /// I-JSON's exact range (see the module docs): every sealed entry canonicalises with any RFC 8785
    /// implementation.
    pub fn seal(&mut self, key: &SigningKeyFile) -> Result<(), LedgerError> {
        let mut v = serde_json::to_value(&*self).expect("entry serialises");
        if let Value::Object(m) = &mut v {
            m.remove("hash");
            m.remove("signature");
        }
        if let Some(n) = crate::canonical::first_non_i_json_number(&v) {
            return Err(LedgerError::NotIJson { stage: self.stage.clone(), path: n.path, number: n.number });
        }
        let canonical = crate::canonical::to_canonical_string(&v);
        self.hash = crate::canonical::sha256_hex(canonical.as_bytes());
        self.signature = key.sign_bytes(&crate::canonical::pae(ENTRY_PAYLOAD_TYPE, canonical.as_bytes()));
        Ok(())
    }
}

impl Ledger {
    /// The last entry's sequence number and hash: what a report, a README or `--expect-head` pins.
    pub fn head(&self) -> Option<Head> {
        self.entries.last().map(|e| Head { seq: e.seq, hash: e.hash.clone() })
    }
}

/// Derives a stage's seed from the master seed and the stage name: the first 8 bytes (little endian)
/// of sha256(master seed as 8 little-endian bytes ‖ UTF-8 stage name).
/// The seed of the entry named `name`: [`stage_seed`] of the master seed and the name, except for a
/// replicate (`train-A@43`: stage `train-A` run under training seed 43), whose seed is
/// `stage_seed(43, "train-A")` — the seed `train-A` has in an experiment whose master seed is 43.
pub fn instance_seed(master: u64, name: &str) -> u64 {
    match name
        .rsplit_once('@')
        .and_then(|(base, s)| s.parse::<u64>().ok().filter(|v| v.to_string() == s).map(|v| (base, v)))
    {
        Some((base, seed)) => stage_seed(seed, base),
        None => stage_seed(master, name),
    }
}

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
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
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
        // A replicate runs under its own training seed, as the stage would with that master seed.
        assert_eq!(instance_seed(42, "train-A@43"), stage_seed(43, "train-A"));
        assert_eq!(instance_seed(42, "train-A"), stage_seed(42, "train-A"));
        assert_eq!(instance_seed(42, "train-A@x"), stage_seed(42, "train-A@x"));
    }
}
