//! Ledger fragments: how stages that run at the same time, as Slurm jobs on different nodes, record
//! into one ledger without racing on its file.
//!
//! A job never opens the ledger. It runs its one stage instance and writes the entry it would have
//! appended — hashed and signed with the run's key, bound to the ledger by the ledger header's hash —
//! into its own file, `<run>/slurm/fragments/<instance>.json`. The driver (`hsx run --executor slurm`),
//! the ledger's only writer, joins the fragments after the jobs end, in the experiment's stage order
//! (never in the order the jobs finished), checking each fragment before it is appended: its format,
//! the instance it names, the ledger it is bound to, its content hash and its signature. The appended
//! entry is the fragment's entry, chained and re-signed by the ledger, with `env.fragment` recording
//! the fragment file (its path, size and SHA-256); `hsx verify --require-artifacts` checks that file
//! like any other recorded artifact, so a missing or altered fragment is named.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::files::{FileRecord, Root};
use super::keys::SigningKeyFile;
use super::{entry_canonical_bytes, verify_entry_signature, Append, Entry, Header, LedgerError, VERSION, ZERO_HASH};

pub const FRAGMENT_FORMAT: &str = "hsx-fragment";
pub const FRAGMENT_VERSION: u32 = 1;
/// Where fragments live, relative to the run directory.
pub const FRAGMENTS_DIR: &str = "slurm/fragments";

/// A fragment file: one stage instance's signed entry, not yet in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    pub format: String,
    pub version: u32,
    /// The stage instance (`train-A`, `train-A@43`): the entry's stage.
    pub instance: String,
    /// The header hash of the ledger this entry is for; the entry's own `header_sha256` repeats it.
    pub ledger_header_sha256: String,
    /// Sequence 0, `prev` the zero hash: the position is given when the driver joins it.
    pub entry: Entry,
}

/// A fragment's path relative to the run directory.
pub fn fragment_rel(instance: &str) -> String {
    format!("{FRAGMENTS_DIR}/{instance}.json")
}

/// Why a fragment cannot be joined; each names the fragment file.
#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    #[error("fragment {path} is missing: the job for {instance} ended without writing its entry")]
    Missing { path: PathBuf, instance: String },
    #[error("fragment {path} cannot be read: {message}")]
    Read { path: PathBuf, message: String },
    #[error("fragment {path} is not valid: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

/// Writes the one entry of a Slurm job's stage instance into its fragment file.
pub struct FragmentWriter {
    /// The run directory: the fragment is written below it, never through a link.
    run_dir: PathBuf,
    path: PathBuf,
    header: Header,
    key: SigningKeyFile,
    written: bool,
}

impl FragmentWriter {
    /// A writer for the fragment of `instance` in the run directory `run_dir`, bound to the ledger whose
    /// header is `header` (the driver's, read by the job from the ledger file). The key must be the
    /// header's signer.
    pub fn new(run_dir: &Path, instance: &str, header: Header, key: SigningKeyFile) -> Result<Self, LedgerError> {
        let path = run_dir.join(fragment_rel(instance));
        if key.signer().key_id != header.signer.key_id {
            return Err(LedgerError::Stage {
                stage: path.display().to_string(),
                message: format!(
                    "the signing key {} is not the ledger's signer {}",
                    key.signer().key_id,
                    header.signer.key_id
                ),
            });
        }
        Ok(FragmentWriter { run_dir: run_dir.to_owned(), path, header, key, written: false })
    }
}

impl Append for FragmentWriter {
    fn append(&mut self, mut entry: Entry) -> Result<Entry, LedgerError> {
        if self.written {
            return Err(LedgerError::Stage { stage: entry.stage, message: "a fragment holds one entry".into() });
        }
        entry.seq = 0;
        entry.experiment = self.header.experiment.clone();
        entry.header_sha256 = self.header.sha256();
        entry.prev = ZERO_HASH.into();
        entry.seal(&self.key)?;
        let f = Fragment {
            format: FRAGMENT_FORMAT.into(),
            version: FRAGMENT_VERSION,
            instance: entry.stage.clone(),
            ledger_header_sha256: entry.header_sha256.clone(),
            entry: entry.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&f).expect("a fragment serialises");
        crate::fsx::write(&self.run_dir, &self.path, &bytes)?;
        self.written = true;
        Ok(entry)
    }
}

/// A fragment that passed [`read_checked`], with its file's record (under the run root).
#[derive(Debug, Clone)]
pub struct CheckedFragment {
    pub fragment: Fragment,
    pub file: FileRecord,
}

/// Reads the fragment of `instance` under `run_dir` and checks it against the ledger whose header is
/// `header`: format and version, the instance, the ledger it is bound to, the entry's content hash and
/// the header signer's signature. Untrusted until this returns.
pub fn read_checked(run_dir: &Path, instance: &str, header: &Header) -> Result<CheckedFragment, FragmentError> {
    let rel = fragment_rel(instance);
    let path = run_dir.join(&rel);
    let invalid =
        |field: &str, message: String| FragmentError::Invalid { path: path.clone(), field: field.into(), message };
    // Inside the run directory, a regular file (no link followed, a FIFO never waited on), bounded.
    let bytes = match crate::fsx::read(run_dir, &path, crate::fsx::Limit::FRAGMENT) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Err(FragmentError::Missing { path, instance: instance.into() }),
        Err(e) => return Err(FragmentError::Read { path, message: std::io::Error::from(e).to_string() }),
    };
    let sha256 = crate::canonical::sha256_hex(&bytes);
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| invalid("(json)", e.to_string()))?;
    let f: Fragment =
        serde_path_to_error::deserialize(&raw).map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?;
    if f.format != FRAGMENT_FORMAT || f.version != FRAGMENT_VERSION {
        return Err(invalid(
            "format",
            format!("{:?} version {}, expected {FRAGMENT_FORMAT:?} version {FRAGMENT_VERSION}", f.format, f.version),
        ));
    }
    if f.instance != instance || f.entry.stage != instance {
        return Err(invalid(
            "instance",
            format!("holds {:?} (entry stage {:?}), expected {instance:?}", f.instance, f.entry.stage),
        ));
    }
    let header_sha = header.sha256();
    if f.ledger_header_sha256 != header_sha || f.entry.header_sha256 != header_sha {
        return Err(invalid(
            "ledger_header_sha256",
            "was written for another ledger (its header hash differs from this ledger's)".into(),
        ));
    }
    if f.entry.experiment != header.experiment {
        return Err(invalid(
            "entry.experiment",
            format!("{:?}, the ledger's is {:?}", f.entry.experiment, header.experiment),
        ));
    }
    if f.entry.seq != 0 || f.entry.prev != ZERO_HASH {
        return Err(invalid("entry.seq", "a fragment's entry has sequence 0 and the zero hash as prev".into()));
    }
    let config_sha = crate::canonical::sha256_canonical(&f.entry.config);
    if config_sha != f.entry.config_sha256 {
        return Err(invalid(
            "entry.config_sha256",
            format!("recorded {}, but the recorded config hashes to {config_sha}", f.entry.config_sha256),
        ));
    }
    let entry_raw = raw.get("entry").cloned().unwrap_or(Value::Null);
    let canonical = entry_canonical_bytes(&entry_raw, VERSION);
    let computed = crate::canonical::sha256_hex(canonical.as_bytes());
    if computed != f.entry.hash {
        return Err(invalid(
            "entry.hash",
            format!("the entry's content hashes to {computed}, not the recorded hash (a field was edited)"),
        ));
    }
    let public = super::keys::parse_public_key(&header.signer.public_key).map_err(|m| invalid("ledger signer", m))?;
    verify_entry_signature(VERSION, &public, &canonical, &f.entry.hash, &f.entry.signature)
        .map_err(|m| invalid("entry.signature", format!("{m} for the ledger's signer {}", header.signer.key_id)))?;
    Ok(CheckedFragment {
        file: FileRecord { root: Root::Run, path: rel, bytes: bytes.len() as u64, sha256 },
        fragment: f,
    })
}

/// The entry the driver appends for a checked fragment: the job's entry with `env.fragment` naming the
/// fragment file; the ledger then gives it its position, hash and signature.
pub fn joined_entry(c: CheckedFragment) -> Entry {
    let mut e = c.fragment.entry;
    if !e.env.is_object() {
        e.env = serde_json::json!({ "recorded": e.env });
    }
    e.env["fragment"] = serde_json::to_value(&c.file).expect("a file record serialises");
    e.hash.clear();
    e.signature.clear();
    e
}

/// Checks the fragment of `instance` under `run_dir` against `writer`'s ledger and appends it.
pub fn join_into(writer: &mut super::LedgerWriter, run_dir: &Path, instance: &str) -> Result<Entry, LedgerError> {
    let header = writer.ledger().header.clone();
    let checked = read_checked(run_dir, instance, &header)?;
    writer.append(joined_entry(checked))
}

/// The fragment file an entry records (`env.fragment`), if it was joined from one.
pub fn recorded_fragment(env: &Value) -> Option<Result<FileRecord, String>> {
    env.get("fragment").map(|v| serde_json::from_value::<FileRecord>(v.clone()).map_err(|e| e.to_string()))
}
