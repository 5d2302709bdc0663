//! Reading a ledger (always verified first), and the single writer: locks, run-directory claim,
//! atomic append, signed head.
//!
//! An append writes the whole new document to a temporary file in the ledger's directory, fsyncs it,
//! renames it over the ledger and fsyncs the directory. A process killed at any instant therefore
//! leaves either the old ledger or the new one, never a torn file; on an error the temporary file is
//! removed, and the ledger keeps its file mode. `<ledger>.lock` next to the *resolved* ledger path (an
//! advisory exclusive lock held for the writer's lifetime) keeps a second writer out, whatever name or
//! symlink it uses; the run directory is claimed by the same writer (see [`claim_run_dir`]). Every
//! write goes through [`crate::fsx`]; locks and claims live in [`super::claim`].
use serde_json::Value;
use std::path::{Path, PathBuf};

pub use super::claim::{
    check_claim, claim_dir, lock_path_for, read_claim, Claim, Claimed, DirClaim, RunClaim, CLAIM_FILE,
    REPORT_LOCK_FILE, RUN_CLAIM_FILE, RUN_LOCK_FILE,
};
use super::claim::{lock_file, remove_lock};
pub use super::files::write_bytes_atomic;
use super::head::{head_path_for, SignedHead};
use super::keys::{SigningKeyFile, TrustedKeys};
pub use super::location::*;
use super::{Entry, Header, Ledger, LedgerError, FORMAT, VERSION};

/// Reads and parses a ledger file as untrusted raw JSON: size-capped, depth-capped (serde_json's
/// recursion limit), duplicate member names refused, never panicking. Holds the whole document in
/// memory: `verify` streams instead.
pub fn read_raw(path: &Path) -> Result<Value, LedgerError> {
    let text = crate::fsx::read_file(path, crate::fsx::Limit::LEDGER).map_err(|e| match e {
        crate::fsx::FsError::TooLarge { size, limit, .. } => LedgerError::Format {
            path: path.to_owned(),
            message: format!("{size} bytes is larger than the {limit} byte limit"),
        },
        e => e.into(),
    })?;
    super::spelling::refuse_bom(&text, "the ledger")
        .map_err(|message| LedgerError::Format { path: path.to_owned(), message })?;
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

/// Takes the exclusive lock of the ledger at `path` (on its resolved path), or says who holds it.
pub fn acquire_lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    let resolved = resolve_ledger_path(path)?;
    lock_file(parent_of(&resolved), &lock_path_for(&resolved), path)
}

/// The directory of a resolved path (which always has one).
fn parent_of(resolved: &Path) -> &Path {
    resolved.parent().unwrap_or(Path::new("/"))
}

impl Drop for LedgerWriter {
    fn drop(&mut self) {
        remove_lock(&self._lock, &self.lock_path);
    }
}

/// Claims `run_dir` for the ledger with header hash `header_sha256` at `ledger` (resolved path): see
/// [`claim_dir`]. A directory that holds files but no claim is refused for a new ledger
/// (`new_ledger`), since its files would be overwritten; an existing ledger adopts it.
pub fn claim_run_dir(
    run_dir: &Path,
    header_sha256: &str,
    ledger: &Path,
    new_ledger: bool,
) -> Result<RunClaim, LedgerError> {
    let own = |p: &Path| p == ledger || p == lock_path_for(ledger) || p == head_path_for(ledger);
    claim_dir(Claimed::Run, run_dir, header_sha256, ledger, &|p| !new_ledger || own(p))
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
        let lock = lock_file(parent_of(&resolved), &lock_path, path)?;
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
                let head = head_path_for(&resolved);
                crate::fsx::check_writable(crate::fsx::dir_of(&head), &head)?;
                write_atomic(&resolved, &ledger)?;
                SignedHead::new(&ledger, &key).write(&head)?;
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
        // The head is refused (a link planted there) before the ledger is written, not after.
        let head = head_path_for(&self.path);
        crate::fsx::check_writable(crate::fsx::dir_of(&head), &head)?;
        let mut next = self.ledger.clone();
        next.entries.push(entry.clone());
        write_atomic(&self.path, &next)?;
        self.ledger = next;
        SignedHead::new(&self.ledger, &self.key).write(&head)?;
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
