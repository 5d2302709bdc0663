//! Locks and directory claims. A ledger's writer holds `<ledger>.lock`; a run directory and a report
//! directory each belong to one ledger: `.hsx-ledger` in the directory records the header hash and
//! the path (relative to the directory) of that ledger, and a lock file (`.hsx-run.lock`,
//! `.hsx-report.lock`) is held while a writer uses it. A second ledger is refused with both named.
//!
//! Lock files are opened through [`crate::fsx::lock`] (no symbolic link followed, a regular file with
//! one link only) and removed by their holder when it is done.
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::location::relative_location;
use super::LedgerError;
use crate::fsx::Limit;

/// File in a claimed directory naming the one ledger it belongs to.
pub const CLAIM_FILE: &str = ".hsx-ledger";
/// The claim file of a run directory (the same name as every claim).
pub const RUN_CLAIM_FILE: &str = CLAIM_FILE;
/// Lock file held in a run directory while a writer uses it.
pub const RUN_LOCK_FILE: &str = ".hsx-run.lock";
/// Lock file held in a report directory while a writer uses it.
pub const REPORT_LOCK_FILE: &str = ".hsx-report.lock";

/// The lock file of a ledger path (use the resolved path: [`super::location::resolve_ledger_path`]).
pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Whether the open file `f` is the file now at `path` (same device and inode; a link is not followed).
fn same_file(f: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes a lock file its holder is about to release. Still holding the lock, nobody else can be
/// between their lock and their inode check in [`lock_file`].
pub(super) fn remove_lock(f: &std::fs::File, lock_path: &Path) {
    if same_file(f, lock_path) {
        let _ = std::fs::remove_file(lock_path);
    }
}

/// Takes the exclusive lock `lock_path` (in the directory `dir`, resolved by the caller) on behalf of
/// `what`. The lock file is opened through [`crate::fsx::lock`]: never through a symbolic link, and
/// refused when it is not a regular file with one link, so a planted link cannot make hsx truncate
/// another file.
pub(super) fn lock_file(dir: &Path, lock_path: &Path, what: &Path) -> Result<std::fs::File, LedgerError> {
    let io = |source| LedgerError::Io { path: lock_path.to_owned(), source };
    // Lock files are removed when their holder is done (no lock file is left behind). A process that
    // opened the old file just before that removal would lock a file no longer at `lock_path`: after
    // locking, check that the path still names the locked file, and start over when it does not.
    let mut attempts = 0;
    let (mut f, locked) = loop {
        let f = crate::fsx::lock(dir, lock_path)?;
        match FileExt::try_lock_exclusive(&f) {
            Ok(true) if attempts < 100 && !same_file(&f, lock_path) => attempts += 1,
            locked => break (f, locked),
        }
    };
    match locked {
        Ok(true) => {}
        Ok(false) => {
            let mut holder = String::new();
            let _ = (&f).take(64).read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LedgerError::Locked {
                path: what.to_owned(),
                lock: lock_path.to_owned(),
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

/// What `.hsx-ledger` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The header hash of the ledger the directory belongs to.
    pub header_sha256: String,
    /// That ledger, relative to the claimed directory (a tree moved as a whole keeps its claim).
    pub ledger: String,
}

/// What a claimed directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// A run directory: a ledger's artifacts.
    Run,
    /// A report directory: `REPORT.md`, its table and plots.
    Report,
}

impl Claimed {
    fn lock_name(self) -> &'static str {
        match self {
            Claimed::Run => RUN_LOCK_FILE,
            Claimed::Report => REPORT_LOCK_FILE,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Claimed::Run => "run directory",
            Claimed::Report => "report directory",
        }
    }

    fn holds(self) -> &'static str {
        match self {
            Claimed::Run => "one ledger's artifacts: give this run its own experiment id or runs_dir (or --out)",
            Claimed::Report => "one ledger's report: give this experiment its own experiment.report_dir",
        }
    }
}

/// A claimed directory: locked for this writer's lifetime.
#[derive(Debug)]
pub struct DirClaim {
    pub dir: PathBuf,
    kind: Claimed,
    lock: std::fs::File,
}

/// A claimed run directory.
pub type RunClaim = DirClaim;

impl Drop for DirClaim {
    fn drop(&mut self) {
        remove_lock(&self.lock, &self.dir.join(self.kind.lock_name()));
    }
}

/// The claim recorded in `dir`, if any (read as untrusted input: a regular file, size-bounded).
pub fn read_claim(dir: &Path) -> Result<Option<Claim>, LedgerError> {
    let path = dir.join(CLAIM_FILE);
    match crate::fsx::read(dir, &path, Limit::CLAIM) {
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| LedgerError::RunDir {
            path,
            message: format!("is not a claim hsx wrote ({e}); remove it if no ledger owns this directory"),
        }),
    }
}

/// The ledger `other` names, for messages; `None` when it is gone (nothing left that the directory's
/// files could verify against).
fn claimant(dir: &Path, other: &Claim) -> Option<PathBuf> {
    let p = dir.join(&other.ledger);
    (other.ledger.is_empty() || p.exists()).then_some(p)
}

/// Refuses `dir` when another ledger that still exists claims it, naming both.
pub fn check_claim(dir: &Path, header_sha256: &str, ledger: &Path, kind: Claimed) -> Result<(), LedgerError> {
    match read_claim(dir)? {
        Some(other) if other.header_sha256 != header_sha256 => match claimant(dir, &other) {
            None => Ok(()),
            Some(theirs) => Err(LedgerError::RunDir {
                path: dir.to_owned(),
                message: format!(
                    "this {what} belongs to ledger {} (header sha256 {}), not to {} (header sha256 {header_sha256}); \
                     a {what} holds {holds}, or remove the directory if the other ledger is obsolete",
                    theirs.display(),
                    other.header_sha256,
                    ledger.display(),
                    what = kind.what(),
                    holds = kind.holds(),
                ),
            }),
        },
        _ => Ok(()),
    }
}

/// Claims `dir` (created if needed, as named) for the ledger with header hash `header_sha256` at
/// `ledger` (resolved path): locks the directory's lock file, and records the ledger in `.hsx-ledger`.
/// A directory claimed by another ledger that still exists is refused, naming both. A directory that
/// holds no claim but an entry `may_hold` does not accept (given its full path) is refused, since
/// this ledger would overwrite it.
pub fn claim_dir(
    kind: Claimed,
    dir: &Path,
    header_sha256: &str,
    ledger: &Path,
    may_hold: &dyn Fn(&Path) -> bool,
) -> Result<DirClaim, LedgerError> {
    let io = |p: &Path, source| LedgerError::Io { path: p.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| io(dir, e))?;
    let lock = lock_file(&dir, &dir.join(kind.lock_name()), &dir)?;
    // Held from here on: an early return drops it, which removes the lock file.
    let claim = DirClaim { dir: dir.clone(), kind, lock };
    let ledger_rel = ledger
        .parent()
        .and_then(|p| relative_location(&dir, p))
        .zip(ledger.file_name().and_then(|n| n.to_str()))
        .map(|(d, n)| if d == "." { n.to_owned() } else { format!("{d}/{n}") })
        .unwrap_or_else(|| ledger.to_string_lossy().into_owned());
    if read_claim(&dir)?.is_some() {
        check_claim(&dir, header_sha256, ledger, kind)?;
    } else {
        let mut foreign: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != kind.lock_name() && !may_hold(&e.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !foreign.is_empty() {
            foreign.sort();
            let shown = foreign.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            return Err(LedgerError::RunDir {
                path: dir.clone(),
                message: format!(
                    "this {what} already holds files this ledger did not write ({shown}{more}) but names no ledger \
                     ({CLAIM_FILE} is missing); {} would overwrite them: remove them, or choose another directory \
                     (a {what} holds {holds})",
                    ledger.display(),
                    more = if foreign.len() > 5 { ", …" } else { "" },
                    what = kind.what(),
                    holds = kind.holds(),
                ),
            });
        }
    }
    let mine = Claim { header_sha256: header_sha256.to_owned(), ledger: ledger_rel };
    let mut text = serde_json::to_string_pretty(&mine).expect("a claim serialises");
    text.push('\n');
    crate::fsx::write(&dir, &dir.join(CLAIM_FILE), text.as_bytes())?;
    Ok(claim)
}
