//! Hash each input file once per process, not once per stage: a stage's inputs are hashed before it runs,
//! after it runs (to catch a file that changed meanwhile) and when resuming, and most stages read the
//! base model, so a run of the base profile would otherwise stream flan-t5-base's 990 MB
//! `model.safetensors` through SHA-256 some forty times.
//!
//! The memo is keyed by what the kernel says about the file (device, inode, size, modification and
//! status-change times to the nanosecond): any write to the file moves its status-change time (ctime),
//! which no user call can set back. As git does for its index ("racy git"), a hash is kept only when the
//! file had not changed for [`SETTLED`] before hashing began, so a write landing within the filesystem's
//! timestamp granularity of an earlier one cannot hide behind an equal time. A file written moments ago
//! (every stage's outputs) is therefore always hashed afresh. The memo lives in memory only: a new
//! process (a new `hsx run`, each Slurm job) hashes everything again, and `hsx verify` never uses it.
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a file must have been unchanged before its hash is kept (covers coarse and 2-second
/// filesystem timestamps).
pub const SETTLED: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether the file's last change (ctime, which every write moves) lies at least [`SETTLED`] before
    /// `t`.
    fn settled_before(&self, t: SystemTime) -> bool {
        let Ok(now) = t.duration_since(UNIX_EPOCH) else { return false };
        let (s, ns) = self.ctime;
        if s < 0 {
            return false;
        }
        let changed = Duration::new(s as u64, ns.clamp(0, 999_999_999) as u32);
        changed + SETTLED <= now
    }
}

fn memo() -> &'static Mutex<HashMap<Stamp, String>> {
    static MEMO: OnceLock<Mutex<HashMap<Stamp, String>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

/// [`super::hash_file`], remembered for the rest of the process when the file is settled (see the module
/// docs). Returns (bytes, hex SHA-256).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let f = super::open_regular(path, crate::fsx::Limit::ARTIFACT)?;
    let before = Stamp::of(&f.file().metadata()?);
    if let Some(sha) = memo().lock().unwrap_or_else(|p| p.into_inner()).get(&before) {
        return Ok((before.len, sha.clone()));
    }
    let started = SystemTime::now();
    let handle = f.file().try_clone()?;
    let (bytes, sha) = super::hash_open_file(f, None)?;
    let after = Stamp::of(&handle.metadata()?);
    if after == before && bytes == before.len && before.settled_before(started) {
        memo().lock().unwrap_or_else(|p| p.into_inner()).insert(before, sha.clone());
    }
    Ok((bytes, sha))
}

/// Whether the memo holds a hash for the file as it is now (for tests).
pub fn remembered(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| memo().lock().unwrap_or_else(|p| p.into_inner()).contains_key(&Stamp::of(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_file_is_hashed_once_and_a_write_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.bin");
        std::fs::write(&p, b"first").unwrap();
        // Just written: hashed, and not remembered (it may still be changing within the clock's grain).
        let fresh = hash_file(&p).unwrap();
        assert_eq!(fresh, (5, crate::canonical::sha256_hex(b"first")));
        assert!(!remembered(&p));
        std::thread::sleep(SETTLED + Duration::from_millis(200));
        assert_eq!(hash_file(&p).unwrap(), fresh);
        assert!(remembered(&p), "a settled file's hash is kept");
        assert_eq!(hash_file(&p).unwrap(), fresh, "and served from the memo");
        // Same length, new bytes: the status-change time moves, so the memo no longer matches.
        std::fs::write(&p, b"other").unwrap();
        assert!(!remembered(&p));
        assert_eq!(hash_file(&p).unwrap(), (5, crate::canonical::sha256_hex(b"other")));
    }
}
