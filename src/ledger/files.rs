//! File records: safe relative paths under named roots, streamed SHA-256, directory expansion.
//!
//! Everything here treats the file system as untrusted: only regular files are opened (a FIFO, device
//! or socket is refused before it can block or stream forever), a path is resolved and must stay
//! inside its root (a symlink out of the root is refused), a recorded size is compared before any byte
//! is hashed, and a directory that holds a symlink, a special file or a name that is not UTF-8 is
//! refused with that name rather than silently recorded without it.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::LedgerError;
use crate::fsx::{Bounded, Limit};

pub mod memo;

/// Which directory a recorded path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Root {
    /// The experiment's run directory (`runs/<experiment>`).
    Run,
    /// The CosmosQA data directory (`$HSX_DATA_MIRROR/cosmosqa` or the config's `data.dir`).
    Data,
    /// The directory hsx runs in (e.g. `models/flan-t5-base`).
    Workspace,
}

impl std::fmt::Display for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Root::Run => "run",
            Root::Data => "data",
            Root::Workspace => "workspace",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    pub root: Root,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Where the roots are on this machine. A root that cannot be resolved here is `None`: files under it
/// are reported missing, never tampered.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub run: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
}

impl Roots {
    pub fn get(&self, root: Root) -> Option<&Path> {
        match root {
            Root::Run => self.run.as_deref(),
            Root::Data => self.data.as_deref(),
            Root::Workspace => self.workspace.as_deref(),
        }
    }

    /// The on-disk location of a recorded path, after checking the path is safe.
    pub fn resolve(&self, root: Root, rel: &str) -> Result<Option<PathBuf>, LedgerError> {
        check_relative(rel)?;
        Ok(self.get(root).map(|r| r.join(rel)))
    }
}

/// A recorded path must be relative, non-empty, use `/`, and never climb out of its root.
pub fn check_relative(rel: &str) -> Result<(), LedgerError> {
    let bad = |why: &str| Err(LedgerError::Path(format!("unsafe path {rel:?} in ledger: {why}")));
    if rel.is_empty() {
        return bad("empty");
    }
    if rel.contains('\\') || rel.contains('\0') {
        return bad("contains a backslash or NUL");
    }
    if Path::new(rel).is_absolute() || rel.starts_with('/') {
        return bad("absolute");
    }
    // Segment by segment: `Path::components` would silently drop a `.` in the middle.
    for seg in rel.split('/') {
        match seg {
            "" => return bad("has an empty segment"),
            "." => return bad("contains '.'"),
            ".." => return bad("climbs out of its root with '..'"),
            _ => {}
        }
    }
    Ok(())
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Opens a regular file for reading, through [`crate::fsx::open_file`]: anything else (FIFO, device,
/// socket, directory) is refused on the open handle, which was opened without blocking.
pub fn open_regular(path: &Path, limit: Limit) -> std::io::Result<Bounded> {
    Ok(crate::fsx::open_file(path, limit)?)
}

/// Resolves `rel` under `root` and checks the result stays inside the (resolved) root: a symlink that
/// points out of the root is refused. `Ok(None)` when the file does not exist.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<Option<PathBuf>, String> {
    check_relative(rel).map_err(|e| e.to_string())?;
    let joined = root.join(rel);
    let real_root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", root.display())),
    };
    match joined.canonicalize() {
        Ok(real) if real.starts_with(&real_root) => Ok(Some(real)),
        Ok(real) => {
            Err(format!("{rel} resolves to {}, outside its root {}; refused", real.display(), real_root.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is refused rather than called missing.
            if std::fs::symlink_metadata(&joined).is_ok() {
                Err(format!("{rel} is a symbolic link to nothing; refused"))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(format!("{}: {e}", joined.display())),
    }
}

/// What is on disk for a recorded file.
#[derive(Debug, Clone, PartialEq)]
pub enum OnDisk {
    /// Same size and SHA-256.
    Matches,
    Missing,
    /// Present but different; `sha256` is `None` when the size already differed (not hashed).
    Differs {
        bytes: u64,
        sha256: Option<String>,
    },
    /// Cannot be checked safely: not a regular file, outside its root, unreadable.
    Refused(String),
}

/// Checks a recorded file under `root`: resolved inside the root, a regular file, size compared first,
/// then streamed through SHA-256.
pub fn check_recorded(root: &Path, rec: &FileRecord) -> OnDisk {
    let full = match resolve_inside(root, &rec.path) {
        Ok(Some(p)) => p,
        Ok(None) => return OnDisk::Missing,
        Err(msg) => return OnDisk::Refused(msg),
    };
    let f = match crate::fsx::open_file(&full, Limit::ARTIFACT) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return OnDisk::Missing,
        Err(e) => return OnDisk::Refused(e.to_string()),
    };
    let len = f.size();
    if len != rec.bytes {
        return OnDisk::Differs { bytes: len, sha256: None };
    }
    match hash_open_file(f, Some(rec.bytes)) {
        Ok((bytes, sha)) if bytes == rec.bytes && sha == rec.sha256 => OnDisk::Matches,
        Ok((bytes, sha)) => OnDisk::Differs { bytes, sha256: Some(sha) },
        Err(e) => OnDisk::Refused(e.to_string()),
    }
}

/// Streams a regular file through SHA-256 (never reads it whole). Returns (bytes, hex digest).
/// FIFOs, devices and sockets are refused.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    hash_open_file(open_regular(path, Limit::ARTIFACT)?, None)
}

/// Hashes an open file; with `limit`, stops one byte past it (a file that grows while it is read
/// cannot keep the reader busy).
fn hash_open_file(f: impl Read, limit: Option<u64>) -> std::io::Result<(u64, String)> {
    let mut f = f.take(limit.map(|l| l + 1).unwrap_or(u64::MAX));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((total, hex::encode(h.finalize())))
}

/// Records `rel` under `root`: one record for a file, one per file (sorted by path) for a directory.
pub fn record_path(roots: &Roots, root: Root, rel: &str) -> Result<Vec<FileRecord>, LedgerError> {
    let base =
        roots.get(root).ok_or_else(|| LedgerError::Path(format!("root {root} is not available on this machine")))?;
    check_relative(rel)?;
    let full = base.join(rel);
    let meta = std::fs::symlink_metadata(&full).map_err(|source| LedgerError::Io { path: full.clone(), source })?;
    let mut rels = Vec::new();
    if meta.is_dir() {
        collect_files(&full, rel, &mut rels)?;
        rels.sort();
    } else if meta.is_file() {
        rels.push(rel.to_owned());
    } else if meta.file_type().is_symlink() {
        // A symlinked path is recorded as what it resolves to, if that stays inside the root.
        match resolve_inside(base, rel) {
            Ok(Some(real)) if real.is_file() => rels.push(rel.to_owned()),
            Ok(Some(real)) if real.is_dir() => {
                collect_files(&real, rel, &mut rels)?;
                rels.sort();
            }
            Ok(_) => {
                return Err(LedgerError::Path(format!("{root}:{rel} is a symbolic link to nothing usable; refused")))
            }
            Err(msg) => return Err(LedgerError::Path(format!("{root}:{msg}"))),
        }
    } else {
        return Err(LedgerError::Path(format!(
            "{root}:{rel} is {}, not a regular file or directory; refused",
            kind_of(&meta.file_type())
        )));
    }
    let mut out = Vec::with_capacity(rels.len());
    for r in rels {
        let p = base.join(&r);
        // Inputs are recorded again and again (before and after each stage, and when resuming): memo::hash_file
        // hashes each settled file once per process.
        let (bytes, sha256) = memo::hash_file(&p).map_err(|source| LedgerError::Io { path: p.clone(), source })?;
        out.push(FileRecord { root, path: r, bytes, sha256 });
    }
    Ok(out)
}

fn collect_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), LedgerError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LedgerError::Io { path: dir.to_owned(), source })?;
    for ent in rd {
        let ent = ent.map_err(|source| LedgerError::Io { path: dir.to_owned(), source })?;
        let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
            return Err(LedgerError::Path(format!(
                "{} holds a file whose name is not UTF-8 ({:?}); a ledger records UTF-8 paths only: rename or remove it",
                dir.display(),
                ent.file_name()
            )));
        };
        let child_rel = format!("{rel}/{name}");
        if check_relative(&child_rel).is_err() {
            return Err(LedgerError::Path(format!(
                "{} holds a file named {name:?}, which cannot be recorded as a path: rename or remove it",
                dir.display()
            )));
        }
        let ft = ent.file_type().map_err(|source| LedgerError::Io { path: ent.path(), source })?;
        if ft.is_dir() {
            collect_files(&ent.path(), &child_rel, out)?;
        } else if ft.is_file() {
            out.push(child_rel);
        } else {
            return Err(LedgerError::Path(format!(
                "{} is {}; hsx records regular files only and will not silently leave it out: replace it with the file it stands for, or remove it",
                ent.path().display(),
                kind_of(&ft)
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through [`crate::fsx::write`], with `path`'s own directory as the root (a
/// ledger, its head, a claim: their directories are resolved before): a temporary file with an
/// unpredictable name, created without following links, synced and renamed over `path`; a `path` that
/// is a symbolic link, a hard link or not a regular file is refused. The temporary file is removed on
/// every error path, and an existing file's permission bits are kept.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    Ok(crate::fsx::write(crate::fsx::dir_of(path), path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_rejected() {
        for p in ["", "/etc/passwd", "../x", "a/../../b", "a/./b", "a\\b", "./a"] {
            assert!(check_relative(p).is_err(), "{p:?} accepted");
        }
        for p in ["a", "a/b.jsonl", "prepare/human_train.jsonl"] {
            assert!(check_relative(p).is_ok(), "{p:?} rejected");
        }
    }

    #[test]
    fn directories_expand_to_sorted_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m/sub")).unwrap();
        std::fs::write(d.path().join("m/b.txt"), "b").unwrap();
        std::fs::write(d.path().join("m/a.txt"), "a").unwrap();
        std::fs::write(d.path().join("m/sub/c.txt"), "c").unwrap();
        let roots = Roots { run: Some(d.path().to_owned()), ..Default::default() };
        let recs = record_path(&roots, Root::Run, "m").unwrap();
        let paths: Vec<_> = recs.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["m/a.txt", "m/b.txt", "m/sub/c.txt"]);
        assert_eq!(recs[0].sha256, crate::canonical::sha256_hex(b"a"));
    }
}
