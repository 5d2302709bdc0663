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
    // The writer removes the lock file when it is done. A process that opened the old file just before
    // that removal would hold a lock on a file no longer at `lock_path`: after locking, check that the
    // path still names the locked file, and start over when it does not.
    let mut attempts = 0;
    let mut f = loop {
        let f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&lock_path).map_err(io)?;
        match FileExt::try_lock_exclusive(&f) {
            Ok(true) if attempts < 100 && !same_file(&f, &lock_path) => {
                attempts += 1;
                continue;
            }
            _ => break f,
        }
    };
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

/// Whether the open file `f` is the file now at `path` (same device and inode).
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Checks a header's `run_dir`: `.` (the run directory is the ledger's own directory: a self-contained
/// run made with `hsx run --out` or `hsx reproduce`), or a safe path relative to the workspace.
pub fn check_run_dir(run_dir: &str) -> Result<(), LedgerError> {
    if run_dir == "." {
        Ok(())
    } else {
        super::files::check_relative(run_dir)
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        // Still holding the lock: nobody else can be between their lock and their inode check.
        if same_file(&self._lock, &self.lock_path) {
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

impl LedgerWriter {
    /// Opens (or creates) the ledger at `path` for experiment `experiment`, holding the lock.
    pub fn open(path: &Path, experiment: &str, run_dir: &str, key: SigningKeyFile) -> Result<Self, LedgerError> {
        check_run_dir(run_dir)?;
        let lock = acquire_lock(path)?;
        let unlock = |e: LedgerError, lock: std::fs::File| {
            if same_file(&lock, &lock_path_for(path)) {
                let _ = std::fs::remove_file(lock_path_for(path));
            }
            drop(lock);
            e
        };
        let ledger = if path.exists() {
            let l = match read(path) {
                Ok(l) => l,
                Err(e) => return Err(unlock(e, lock)),
            };
            if l.header.experiment != experiment {
                let e = LedgerError::WrongExperiment { path: path.to_owned(), found: l.header.experiment, expected: experiment.to_owned() };
                return Err(unlock(e, lock));
            }
            if l.header.signer != key.signer() {
                let e = LedgerError::WrongSigner { path: path.to_owned(), found: l.header.signer.key_id, expected: key.signer().key_id };
                return Err(unlock(e, lock));
            }
            l
        } else {
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
            if let Err(e) = write_atomic(path, &l) {
                return Err(unlock(e, lock));
            }
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
