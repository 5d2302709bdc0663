//! File records: safe relative paths under named roots, streamed SHA-256, directory expansion.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::LedgerError;

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

/// Streams a file through SHA-256 (never reads it whole). Returns (bytes, hex digest).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
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
    let base = roots
        .get(root)
        .ok_or_else(|| LedgerError::Path(format!("root {root} is not available on this machine")))?;
    check_relative(rel)?;
    let full = base.join(rel);
    let meta = std::fs::metadata(&full).map_err(|source| LedgerError::Io { path: full.clone(), source })?;
    let mut rels = Vec::new();
    if meta.is_dir() {
        collect_files(&full, rel, &mut rels)?;
        rels.sort();
    } else {
        rels.push(rel.to_owned());
    }
    let mut out = Vec::with_capacity(rels.len());
    for r in rels {
        let p = base.join(&r);
        let (bytes, sha256) = hash_file(&p).map_err(|source| LedgerError::Io { path: p.clone(), source })?;
        out.push(FileRecord { root, path: r, bytes, sha256 });
    }
    Ok(out)
}

fn collect_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), LedgerError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LedgerError::Io { path: dir.to_owned(), source })?;
    for ent in rd {
        let ent = ent.map_err(|source| LedgerError::Io { path: dir.to_owned(), source })?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let child_rel = format!("{rel}/{name}");
        let ft = ent.file_type().map_err(|source| LedgerError::Io { path: ent.path(), source })?;
        if ft.is_dir() {
            collect_files(&ent.path(), &child_rel, out)?;
        } else if ft.is_file() {
            out.push(child_rel);
        }
    }
    Ok(())
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
