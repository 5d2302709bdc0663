//! Reading a ledger (always verified first), and the single writer: locks, run-directory claim,
//! atomic append, signed head.
//!
//! An append writes the whole new document to a temporary file in the ledger's directory, fsyncs it,
//! renames it over the ledger and fsyncs the directory. A process killed at any instant therefore
//! leaves either the old ledger or the new one, never a torn file; on an error the temporary file is
//! removed, and the ledger keeps its file mode. `<ledger>.lock` next to the *resolved* ledger path (an
//! advisory exclusive lock held for the writer's lifetime) keeps a second writer out, whatever name or
//! symlink it uses; the run directory is claimed by the same writer (see [`claim_run_dir`]).
use fs4::fs_std::FileExt;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use super::files::write_bytes_atomic;
use super::head::{head_path_for, SignedHead};
use super::keys::{SigningKeyFile, TrustedKeys};
pub use super::location::*;
use super::{Entry, Header, Ledger, LedgerError, FORMAT, VERSION};

/// Reads and parses a ledger file as untrusted raw JSON: size-capped, depth-capped (serde_json's
/// recursion limit), duplicate member names refused, never panicking. Holds the whole document in
/// memory: `verify` streams instead.
pub fn read_raw(path: &Path) -> Result<Value, LedgerError> {
    let io = |source| LedgerError::Io { path: path.to_owned(), source };
    let f = super::files::open_regular(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > super::MAX_LEDGER_BYTES {
        return Err(LedgerError::Format {
            path: path.to_owned(),
            message: format!("{len} bytes is larger than the {} byte limit", super::MAX_LEDGER_BYTES),
        });
    }
    let mut text = Vec::with_capacity(len as usize);
    f.take(super::MAX_LEDGER_BYTES + 1).read_to_end(&mut text).map_err(io)?;
    crate::canonical::parse_strict(&text).map_err(|e| LedgerError::Format {
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

/// Reads a ledger for use: it must verify first (format, chain, signatures, header, paths, times,
/// signed head; `trusted` keys where given). Recorded files on disk are *not* hashed here (that is
/// `hsx verify`'s job); every recorded path has been checked to be a safe relative path, and the
/// header's locations to be safe, so nothing taken from the ledger can name a place outside its roots.
pub fn open_verified(path: &Path, trusted: Option<&TrustedKeys>) -> Result<Ledger, LedgerError> {
    let opts = super::verify::VerifyOptions { trusted: trusted.cloned(), structure_only: true, ..Default::default() };
    let (report, ledger) = super::verify::verify_collect(path, None, &opts)?;
    match (report.first_failure, ledger) {
        (None, Some(l)) => Ok(l),
        (Some(f), _) => Err(LedgerError::Unverified { path: path.to_owned(), failure: Box::new(f) }),
        (None, None) => Err(LedgerError::Format { path: path.to_owned(), message: "could not be read".into() }),
    }
}

/// Reads a ledger for use (verified, without trusted keys): see [`open_verified`].
pub fn read(path: &Path) -> Result<Ledger, LedgerError> {
    open_verified(path, None)
}

/// Writes `ledger` atomically to `path`: see [`write_bytes_atomic`].
pub fn write_atomic(path: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    let mut text = serde_json::to_string_pretty(ledger).expect("ledger serialises");
    text.push('\n');
    write_bytes_atomic(path, text.as_bytes())
}

/// The lock file of a ledger path (use the resolved path: [`resolve_ledger_path`]).
pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Whether the open file `f` is the file now at `path` (same device and inode).
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes a lock file its holder is about to release. Still holding the lock, nobody else can be
/// between their lock and their inode check in [`lock_file`].
fn remove_lock(f: &std::fs::File, lock_path: &Path) {
    if same_file(f, lock_path) {
        let _ = std::fs::remove_file(lock_path);
    }
}

fn lock_file(target: &Path, lock_path: &Path, what: &Path) -> Result<std::fs::File, LedgerError> {
    let io = |source| LedgerError::Io { path: lock_path.to_owned(), source };
    // Lock files are removed when their holder is done (no lock file is left behind). A process that
    // opened the old file just before that removal would lock a file no longer at `lock_path`: after
    // locking, check that the path still names the locked file, and start over when it does not.
    let mut attempts = 0;
    let (mut f, locked) = loop {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(lock_path)
            .map_err(io)?;
        match FileExt::try_lock_exclusive(&f) {
            Ok(true) if attempts < 100 && !same_file(&f, lock_path) => attempts += 1,
            locked => break (f, locked),
        }
    };
    match locked {
        Ok(true) => {}
        Ok(false) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LedgerError::Locked {
                path: what.to_owned(),
                lock: lock_path.to_owned(),
                holder: if holder.is_empty() { String::new() } else { format!(", held by pid {holder}") },
            });
        }
        Err(source) => return Err(io(source)),
    }
    let _ = target;
    f.set_len(0).map_err(io)?;
    write!(f, "{}", std::process::id()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(f)
}

/// Takes the exclusive lock of the ledger at `path` (on its resolved path), or says who holds it.
pub fn acquire_lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    let resolved = resolve_ledger_path(path)?;
    lock_file(&resolved, &lock_path_for(&resolved), path)
}

/// File in a run directory naming the one ledger it belongs to.
pub const RUN_CLAIM_FILE: &str = ".hsx-ledger";
/// Lock file held in a run directory while a writer uses it.
pub const RUN_LOCK_FILE: &str = ".hsx-run.lock";

/// A claimed run directory: locked for this writer's lifetime.
#[derive(Debug)]
pub struct RunClaim {
    pub dir: PathBuf,
    _lock: std::fs::File,
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        remove_lock(&self._lock, &self.dir.join(RUN_LOCK_FILE));
    }
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        remove_lock(&self._lock, &self.lock_path);
    }
}

/// Claims `run_dir` for the ledger with header hash `header_sha256` at `ledger` (resolved path):
/// creates it if needed, locks `.hsx-run.lock`, and records the ledger in `.hsx-ledger`. A directory
/// claimed by another ledger that still exists is refused, naming both; a directory that holds files
/// but no claim is refused for a new ledger (`new_ledger`), since its files would be overwritten.
pub fn claim_run_dir(
    run_dir: &Path,
    header_sha256: &str,
    ledger: &Path,
    new_ledger: bool,
) -> Result<RunClaim, LedgerError> {
    let io = |p: &Path, source| LedgerError::Io { path: p.to_owned(), source };
    std::fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
    let dir = run_dir.canonicalize().map_err(|e| io(run_dir, e))?;
    let lock = lock_file(&dir, &dir.join(RUN_LOCK_FILE), &dir)?;
    // Held from here on: an early return drops it, which removes the lock file.
    let claim = RunClaim { dir: dir.clone(), _lock: lock };
    let claim_path = dir.join(RUN_CLAIM_FILE);
    // The ledger is named relative to the run directory, so a tree moved as a whole keeps its claim.
    let ledger_rel = ledger
        .parent()
        .and_then(|p| relative_location(&dir, p))
        .zip(ledger.file_name().and_then(|n| n.to_str()))
        .map(|(d, n)| if d == "." { n.to_owned() } else { format!("{d}/{n}") })
        .unwrap_or_else(|| ledger.to_string_lossy().into_owned());
    let mine = serde_json::json!({"header_sha256": header_sha256, "ledger": ledger_rel});
    match super::keys::read_small_regular_file(&claim_path) {
        Ok(text) => {
            let other: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let other_sha = other.get("header_sha256").and_then(Value::as_str).unwrap_or("");
            let other_ledger = other.get("ledger").and_then(Value::as_str).unwrap_or("");
            if other_sha != header_sha256 {
                if !other_ledger.is_empty() && !dir.join(other_ledger).exists() {
                    // The ledger that claimed it is gone: nothing left that its files could verify against.
                } else {
                    return Err(LedgerError::RunDir {
                        path: dir.clone(),
                        message: format!(
                            "this run directory belongs to ledger {} (header sha256 {other_sha}), not to {} \
                             (header sha256 {header_sha256}); a run directory holds one ledger's artifacts: give this run \
                             its own experiment id or runs_dir, or remove the directory if the other ledger is obsolete",
                            dir.join(other_ledger).display(),
                            ledger.display()
                        ),
                    });
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if new_ledger {
                let occupied = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?.filter_map(Result::ok).any(|e| {
                    e.file_name() != RUN_LOCK_FILE
                        && e.path() != ledger
                        && e.path() != lock_path_for(ledger)
                        && e.path() != head_path_for(ledger)
                });
                if occupied {
                    return Err(LedgerError::RunDir {
                        path: dir.clone(),
                        message: format!(
                            "this run directory already holds files but names no ledger ({RUN_CLAIM_FILE} is missing); \
                             a new ledger {} would overwrite them: remove the directory, or choose another experiment id or runs_dir",
                            ledger.display()
                        ),
                    });
                }
            }
        }
        Err(e) => return Err(io(&claim_path, e)),
    }
    let mut text = serde_json::to_string_pretty(&mine).expect("claim serialises");
    text.push('\n');
    write_bytes_atomic(&claim_path, text.as_bytes())?;
    Ok(claim)
}

/// The one writer of a ledger. Holds `<ledger>.lock` and the run directory's claim until dropped.
pub struct LedgerWriter {
    path: PathBuf,
    _lock: std::fs::File,
    _run: RunClaim,
    lock_path: PathBuf,
    ledger: Ledger,
    key: SigningKeyFile,
}

impl std::fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerWriter").field("path", &self.path).field("entries", &self.ledger.entries.len()).finish()
    }
}

impl LedgerWriter {
    /// Opens (or creates) the ledger at `path` for experiment `experiment`, writing into the run
    /// directory and workspace of `loc`. Holds the ledger's lock (on its resolved path) and claims the
    /// run directory. An existing ledger must verify, be version 2, belong to `experiment`, be signed by
    /// `key`, and name the same run directory.
    pub fn open(path: &Path, experiment: &str, loc: &Locations, key: SigningKeyFile) -> Result<Self, LedgerError> {
        let resolved = resolve_ledger_path(path)?;
        let lock_path = lock_path_for(&resolved);
        let lock = lock_file(&resolved, &lock_path, path)?;
        // On any error below, the lock file goes with the lock.
        let opened = (|| -> Result<(Ledger, RunClaim), LedgerError> {
            let io = |p: &Path, source| LedgerError::Io { path: p.to_owned(), source };
            let exists = std::fs::symlink_metadata(&resolved).is_ok();
            // An existing ledger is verified before anything is created on its behalf.
            let existing = if exists { Some(open_verified(&resolved, None)?) } else { None };
            if let Some(l) = existing.as_ref().filter(|l| l.header.version != VERSION) {
                return Err(LedgerError::ReadOnly { path: path.to_owned(), version: l.header.version });
            }
            std::fs::create_dir_all(&loc.run).map_err(|e| io(&loc.run, e))?;
            let run_abs = loc.run.canonicalize().map_err(|e| io(&loc.run, e))?;
            let ws_abs = loc.workspace.canonicalize().map_err(|e| io(&loc.workspace, e))?;
            let ledger = if let Some(l) = existing {
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
                let recorded = locate(&resolved, &l.header)?;
                let rec_run = recorded.run.canonicalize().unwrap_or(recorded.run.clone());
                if rec_run != run_abs {
                    return Err(LedgerError::RunDir {
                        path: run_abs.clone(),
                        message: format!(
                            "ledger {} records its run directory as {}; it cannot be appended with artifacts from another directory",
                            path.display(),
                            rec_run.display()
                        ),
                    });
                }
                l
            } else {
                let dir = resolved.parent().expect("resolved ledger path has a directory");
                let rel = |to: &Path| {
                    relative_location(dir, to)
                        .ok_or_else(|| LedgerError::Path(format!("{} is not a UTF-8 path", to.display())))
                };
                Ledger {
                    header: Header {
                        format: FORMAT.into(),
                        version: VERSION,
                        experiment: experiment.into(),
                        run_dir: rel(&run_abs)?,
                        workspace: Some(rel(&ws_abs)?),
                        created: super::now_utc(),
                        signer: key.signer(),
                    },
                    entries: Vec::new(),
                }
            };
            let run = claim_run_dir(&run_abs, &ledger.header.sha256(), &resolved, !exists)?;
            if !exists {
                write_atomic(&resolved, &ledger)?;
                SignedHead::new(&ledger, &key).write(&head_path_for(&resolved))?;
            }
            Ok((ledger, run))
        })();
        let (ledger, run) = match opened {
            Ok(v) => v,
            Err(e) => {
                remove_lock(&lock, &lock_path);
                return Err(e);
            }
        };
        Ok(Self { path: resolved, _lock: lock, _run: run, lock_path, ledger, key })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The resolved path the writer writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Fills in `seq`, `experiment`, `header_sha256` and `prev`, hashes and signs the entry, appends it
    /// atomically and writes the signed head. Returns the entry as written.
    pub fn append(&mut self, entry: Entry) -> Result<Entry, LedgerError> {
        <Self as super::Append>::append(self, entry)
    }
}

impl super::Append for LedgerWriter {
    fn append(&mut self, mut entry: Entry) -> Result<Entry, LedgerError> {
        entry.seq = self.ledger.entries.len() as u64;
        entry.experiment = self.ledger.header.experiment.clone();
        entry.header_sha256 = self.ledger.header.sha256();
        entry.prev = self.ledger.entries.last().map(|e| e.hash.clone()).unwrap_or_else(|| super::ZERO_HASH.into());
        entry.seal(&self.key)?;
        let mut next = self.ledger.clone();
        next.entries.push(entry.clone());
        write_atomic(&self.path, &next)?;
        self.ledger = next;
        SignedHead::new(&self.ledger, &self.key).write(&head_path_for(&self.path))?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_relative_and_checked() {
        assert_eq!(relative_location(Path::new("/w/ledger"), Path::new("/w/runs/x")).unwrap(), "../runs/x");
        assert_eq!(relative_location(Path::new("/w/out"), Path::new("/w/out")).unwrap(), ".");
        assert_eq!(relative_location(Path::new("/a/b"), Path::new("/a")).unwrap(), "..");
        for ok in [".", "..", "../runs/x", "runs/x", "../../a"] {
            assert!(check_location(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "a/../b", "a/./b", "./a", "a//b", "a\\b", "../a/.."] {
            assert!(check_location(bad).is_err(), "{bad}");
        }
    }
}
