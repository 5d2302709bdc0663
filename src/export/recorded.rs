//! What an export reads from a verified ledger: the latest entry of each stage instance, the roots its
//! files lie under on this machine, and those files — each copied or read only when its size and
//! SHA-256 are the ones its entry recorded. And where an export may write: never inside the recorded
//! run directory.
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{ExportError, Verified};
use crate::ledger::files::{open_regular, resolve_inside};
use crate::ledger::{Entry, FileRecord, Head, Header, Roots};

/// A verified ledger with where its files are on this machine.
#[derive(Debug)]
pub struct RunView<'v> {
    pub ledger_path: &'v Path,
    pub header: &'v Header,
    pub entries: &'v [Entry],
    /// The last entry: what every export names as the state it shows.
    pub head: Head,
    pub roots: Roots,
}

impl<'v> RunView<'v> {
    /// The view of `v`, its roots resolved from the ledger's own location (`data` from `mirror`, else the
    /// recorded config's `data.dir`).
    pub fn of(v: &'v Verified, mirror: Option<&Path>) -> Result<Self, ExportError> {
        let last = v.entries.last().ok_or_else(|| ExportError::Unverified {
            path: v.path.clone(),
            failure: "the ledger has no entries".into(),
        })?;
        let data_dir = v.entries.iter().rev().find_map(|e| e.config.pointer("/data/dir")?.as_str().map(str::to_owned));
        let roots = crate::ledger::store::roots_for(&v.path, &v.header, data_dir.as_deref(), mirror)?;
        Ok(RunView {
            ledger_path: &v.path,
            header: &v.header,
            entries: &v.entries,
            head: Head { seq: last.seq, hash: last.hash.clone() },
            roots,
        })
    }

    /// The latest entry of each stage instance (`train-A`, `train-A@43`, …), by name: what the report
    /// shows and what an export shows.
    pub fn latest(&self) -> BTreeMap<String, &'v Entry> {
        crate::report::latest_by_stage(self.entries)
    }

    /// The latest entry of `stage`, or an error saying the run has not reached it.
    pub fn entry(&self, stage: &str) -> Result<&'v Entry, ExportError> {
        self.entries.iter().rev().find(|e| e.stage == stage).ok_or_else(|| ExportError::MissingStage {
            stage: stage.to_owned(),
            hint: "run `hsx run` through it first (an export shows a finished run)".into(),
        })
    }

    pub fn run_dir(&self) -> Result<&Path, ExportError> {
        self.roots
            .run
            .as_deref()
            .ok_or_else(|| ExportError::file(self.ledger_path, "its run directory cannot be found"))
    }

    /// The head as hsx cites it everywhere: `seq N, sha256 H`.
    pub fn head_citation(&self) -> String {
        crate::ledger::head::citation(&self.head)
    }

    /// The ledger's file name, as the cards' `hsx verify` lines name it.
    pub fn ledger_file(&self) -> String {
        self.ledger_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// `[#seq hash10]`: how an export cites the entry a figure comes from, as REPORT.md does.
pub fn cite(e: &Entry) -> String {
    format!("[#{} {}]", e.seq, e.hash.get(..10).unwrap_or(&e.hash))
}

/// The absolute form of `p`, resolving symlinks in the part that exists (a path that does not exist
/// yet is its existing ancestor's canonical path joined with the rest).
fn absolute(p: &Path) -> std::io::Result<PathBuf> {
    let abs = if p.is_absolute() { p.to_owned() } else { std::env::current_dir()?.join(p) };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        match cur.canonicalize() {
            Ok(c) => return Ok(rest.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part))),
            Err(_) => {
                let Some(parent) = cur.parent() else { return Ok(abs) };
                if let Some(name) = cur.file_name() {
                    rest.push(name.to_owned());
                }
                cur = parent;
            }
        }
    }
}

/// Checks an export directory: never inside the recorded run directory (nothing recorded may change),
/// and either absent or empty (an export is written whole, never merged into older files). Returns
/// its absolute path.
pub fn check_out_dir(out: &Path, run_dir: &Path) -> Result<PathBuf, ExportError> {
    let bad = |message: String| ExportError::Out { path: out.to_owned(), message: format!("--out: {message}") };
    let abs = absolute(out).map_err(|e| bad(e.to_string()))?;
    let run = absolute(run_dir).map_err(|e| bad(format!("the run directory {}: {e}", run_dir.display())))?;
    if abs.starts_with(&run) {
        return Err(bad(format!(
            "is inside the recorded run directory {}; export outside it, so nothing recorded changes",
            run.display()
        )));
    }
    match std::fs::read_dir(&abs) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(bad("exists and is not empty; remove it or name a new directory".into()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    if abs.parent().is_none() {
        return Err(bad("names the file system root".into()));
    }
    Ok(abs)
}

/// Copies the recorded file `rec` (under `root`) to `dest`, hashing it on the way; the copy is kept only
/// when its size and SHA-256 are the ones `entry` recorded. Returns the bytes copied.
pub fn copy_checked(root: &Path, rec: &FileRecord, entry: &Entry, dest: &Path) -> Result<u64, ExportError> {
    let src = match resolve_inside(root, &rec.path) {
        Ok(Some(p)) => p,
        Ok(None) => return Err(ExportError::file(&root.join(&rec.path), "is missing (recorded by the ledger)")),
        Err(m) => return Err(ExportError::file(&root.join(&rec.path), m)),
    };
    let mut input = open_regular(&src, crate::fsx::Limit::ARTIFACT).map_err(|e| ExportError::file(&src, e))?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ExportError::file(dir, e))?;
    }
    // Through fsx (a temporary file renamed into place, no link followed); the copy is placed only when
    // its size and SHA-256 are the recorded ones.
    let total = crate::fsx::write_with(crate::fsx::dir_of(dest), dest, |output| -> Result<u64, ExportError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(|e| ExportError::file(&src, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            output.write_all(&buf[..n]).map_err(|e| ExportError::file(dest, e))?;
            total += n as u64;
        }
        let sha = hex::encode(hasher.finalize());
        if total != rec.bytes || sha != rec.sha256 {
            return Err(ExportError::Tampered {
                path: src.clone(),
                seq: entry.seq,
                stage: entry.stage.clone(),
                found: format!("{total} bytes, sha256 {sha} (recorded {} bytes, sha256 {})", rec.bytes, rec.sha256),
            });
        }
        Ok(total)
    })?;
    Ok(total)
}

/// Reads the recorded file `rec` (under `root`) whole, and returns it only when its size and SHA-256 are
/// the ones `entry` recorded (for small files: reports, tables, plots).
pub fn read_checked(root: &Path, rec: &FileRecord, entry: &Entry) -> Result<Vec<u8>, ExportError> {
    let src = match resolve_inside(root, &rec.path) {
        Ok(Some(p)) => p,
        Ok(None) => return Err(ExportError::file(&root.join(&rec.path), "is missing (recorded by the ledger)")),
        Err(m) => return Err(ExportError::file(&root.join(&rec.path), m)),
    };
    let mut bytes = Vec::new();
    open_regular(&src, crate::fsx::Limit::ARTIFACT)
        .and_then(|f| f.take(rec.bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| ExportError::file(&src, e))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if bytes.len() as u64 != rec.bytes || sha != rec.sha256 {
        return Err(ExportError::Tampered {
            path: src,
            seq: entry.seq,
            stage: entry.stage.clone(),
            found: format!("{} bytes, sha256 {sha} (recorded {} bytes, sha256 {})", bytes.len(), rec.bytes, rec.sha256),
        });
    }
    Ok(bytes)
}

/// The record of `path` among `entry`'s outputs.
pub fn output<'e>(entry: &'e Entry, path: &str) -> Result<&'e FileRecord, ExportError> {
    entry
        .outputs
        .iter()
        .find(|r| r.path == path)
        .ok_or_else(|| ExportError::entry(entry, format!("records no output `{path}`")))
}

/// A typed view of part of an entry's JSON (`what` names it in errors, e.g. `metrics`).
pub fn typed<T: serde::de::DeserializeOwned>(
    entry: &Entry,
    what: &str,
    value: &serde_json::Value,
) -> Result<T, ExportError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| ExportError::entry(entry, format!("`{what}.{}`: {}", e.path(), e.inner())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_out_dir_inside_the_run_directory_or_not_empty_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        std::fs::create_dir_all(run.join("prepare")).unwrap();
        let e = check_out_dir(&run.join("export"), &run).unwrap_err().to_string();
        assert!(e.contains("inside the recorded run directory"), "{e}");
        assert!(check_out_dir(&run.join("prepare/x/y"), &run).is_err());
        assert!(check_out_dir(&run, &run).is_err());
        // A symlink into the run directory is the run directory.
        std::os::unix::fs::symlink(&run, t.path().join("link")).unwrap();
        assert!(check_out_dir(&t.path().join("link/export"), &run).is_err());
        std::fs::create_dir_all(t.path().join("full")).unwrap();
        std::fs::write(t.path().join("full/x"), "x").unwrap();
        let e = check_out_dir(&t.path().join("full"), &run).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        std::fs::create_dir_all(t.path().join("empty")).unwrap();
        assert!(check_out_dir(&t.path().join("empty"), &run).is_ok());
        assert!(check_out_dir(&t.path().join("new/deeper"), &run).is_ok());
    }
}
