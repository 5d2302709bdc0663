//! Reading a ledger file, and the single writer: lock file, atomic append.
//!
//! An append writes the whole new document to a temporary file in the ledger's directory, fsyncs it,
//! renames it over the ledger and fsyncs the directory. A process killed at any instant therefore
//! leaves either the old ledger or the new one, never a torn file. `<ledger>.lock` (an advisory
//! exclusive lock held for the writer's lifetime) keeps a second writer out.
use fs4::fs_std::FileExt;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::keys::SigningKeyFile;
use super::{Entry, Header, Ledger, LedgerError, FORMAT, VERSION};

/// Reads and parses a ledger file as untrusted input: size-capped, depth-capped (serde_json's
/// recursion limit), never panicking. Returns the raw JSON value.
pub fn read_raw(path: &Path) -> Result<Value, LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > super::MAX_LEDGER_BYTES {
        return Err(LedgerError::Format {
            path: path.to_owned(),
            message: format!("{len} bytes is larger than the {} byte limit", super::MAX_LEDGER_BYTES),
        });
    }
    let mut text = Vec::with_capacity(len as usize);
    f.take(super::MAX_LEDGER_BYTES + 1).read_to_end(&mut text).map_err(io)?;
    serde_json::from_slice(&text).map_err(|e| LedgerError::Format {
        path: path.to_owned(),
        message: format!("JSON error at line {}, column {}: {e}", e.line(), e.column()),
    })
}

/// Parses a ledger into typed form, naming the JSON path of the first bad field.
pub fn parse_typed(raw: &Value, path: &Path) -> Result<Ledger, LedgerError> {
    serde_path_to_error::deserialize(raw).map_err(|e| LedgerError::Format {
        path: path.to_owned(),
        message: format!("at `{}`: {}", e.path(), e.inner()),
    })
}

/// Reads and parses a ledger written by hsx (used by the writer; `verify` does its own checks).
pub fn read(path: &Path) -> Result<Ledger, LedgerError> {
    let raw = read_raw(path)?;
    let ledger = parse_typed(&raw, path)?;
    if ledger.header.format != FORMAT || ledger.header.version != VERSION {
        return Err(LedgerError::Format {
            path: path.to_owned(),
            message: format!(
                "format {:?} version {} (this hsx reads {FORMAT:?} version {VERSION})",
                ledger.header.format, ledger.header.version
            ),
        });
    }
    Ok(ledger)
}

/// Writes `ledger` atomically to `path` (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "ledger".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut text = serde_json::to_string_pretty(ledger).expect("ledger serialises");
    text.push('\n');
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    let d = std::fs::File::open(&dir).map_err(io)?;
    d.sync_all().map_err(io)?;
    Ok(())
}

/// The one writer of a ledger. Holds `<ledger>.lock` until dropped.
pub struct LedgerWriter {
    path: PathBuf,
    _lock: std::fs::File,
    lock_path: PathBuf,
    ledger: Ledger,
    key: SigningKeyFile,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter").field("path", &self.path).field("entries", &self.ledger.entries.len()).finish()
    }
}

pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the exclusive lock on `<ledger>.lock`, or says who holds it.
pub fn acquire_lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    let lock_path = lock_path_for(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io { path: dir.to_owned(), source })?;
    }
    let io = |source| LedgerError::Io { path: lock_path.clone(), source };
    let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(io)?;
    match FileExt::try_lock_exclusive(&f) {
        Ok(true) => {}
        Ok(false) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LedgerError::Locked {
                path: path.to_owned(),
                lock: lock_path.clone(),
                holder: if holder.is_empty() { String::new() } else { format!(", held by pid {holder}") },
            });
        }
        Err(source) => return Err(io(source)),
    }
    f.set_len(0).map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(f)
}

impl LedgerWriter {
    /// Opens (or creates) the ledger at `path` for experiment `experiment`, holding the lock.
    pub fn open(path: &Path, experiment: &str, run_dir: &str, key: SigningKeyFile) -> Result<Self, LedgerError> {
        let lock = acquire_lock(path)?;
        let ledger = if path.exists() {
            let l = read(path)?;
            if l.header.experiment != experiment {
                return Err(LedgerError::WrongExperiment {
                    path: path.to_owned(),
                    found: l.header.experiment,
                    expected: experiment.to_owned(),
                });
            }
            if l.header.signer != key.signer() {
                return Err(LedgerError::WrongSigner {
                    path: path.to_owned(),
                    found: l.header.signer.key_id,
                    expected: key.signer().key_id,
                });
            }
            l
        } else {
            super::files::check_relative(run_dir)?;
            let l = Ledger {
                header: Header {
                    format: FORMAT.into(),
                    version: VERSION,
                    experiment: experiment.into(),
                    run_dir: run_dir.into(),
                    created: super::now_utc(),
                    signer: key.signer(),
                },
                entries: Vec::new(),
            };
            write_atomic(path, &l)?;
            l
        };
        Ok(Self { path: path.to_owned(), _lock: lock, lock_path: lock_path_for(path), ledger, key })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Fills in `seq`, `experiment`, `header_sha256` and `prev`, hashes and signs the entry, and appends it
    /// atomically. Returns the entry as written.
    pub fn append(&mut self, mut entry: Entry) -> Result<Entry, LedgerError> {
        entry.seq = self.ledger.entries.len() as u64;
        entry.experiment = self.ledger.header.experiment.clone();
        entry.header_sha256 = self.ledger.header.sha256();
        entry.prev = self.ledger.entries.last().map(|e| e.hash.clone()).unwrap_or_else(|| super::ZERO_HASH.into());
        entry.hash = entry.compute_hash();
        entry.signature = self.key.sign_hash(&entry.hash);
        let mut next = self.ledger.clone();
        next.entries.push(entry.clone());
        write_atomic(&self.path, &next)?;
        self.ledger = next;
        Ok(entry)
    }
}
