//! Where a ledger's run directory and workspace are: the header records them relative to the ledger
//! file's own directory (never absolute, `..` only leading); these functions check such a location,
//! resolve it on this machine, and give the roots `hsx verify` checks files under.
use std::path::{Path, PathBuf};

use super::{Header, LedgerError};

/// Where a new ledger's run directory and workspace are (absolute, or relative to the working
/// directory). The header records them relative to the ledger file's directory.
#[derive(Debug, Clone)]
pub struct Locations {
    pub run: PathBuf,
    pub workspace: PathBuf,
}

impl Locations {
    pub fn new(run: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Self {
        Self { run: run.into(), workspace: workspace.into() }
    }
}

/// A location in a version-2 header: `.`, or `/`-separated segments where `..` may only lead; never
/// absolute, no backslash or NUL, no `.` or empty segment.
pub fn check_location(rel: &str) -> Result<(), String> {
    if rel == "." {
        return Ok(());
    }
    if rel.is_empty() || rel.starts_with('/') || rel.contains('\\') || rel.contains('\0') {
        return Err(format!("{rel:?} is not a relative location"));
    }
    let mut leading = true;
    for seg in rel.split('/') {
        match seg {
            ".." if leading => {}
            ".." => return Err(format!("{rel:?} has '..' after a name")),
            "" | "." => return Err(format!("{rel:?} has an empty or '.' segment")),
            _ => leading = false,
        }
    }
    Ok(())
}

/// `to` relative to the directory `from` (both absolute and resolved), as a header location.
pub fn relative_location(from: &Path, to: &Path) -> Option<String> {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(t.iter()).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); f.len() - common];
    for c in &t[common..] {
        parts.push(c.as_os_str().to_str()?.to_owned());
    }
    Some(if parts.is_empty() { ".".into() } else { parts.join("/") })
}

/// The resolved path of a ledger: symlinks to it followed, its directory made absolute. All locking
/// and writing goes through this path, so an alias cannot take a second lock or replace a symlink.
pub fn resolve_ledger_path(path: &Path) -> Result<PathBuf, LedgerError> {
    let io = |p: &Path, source| LedgerError::Io { path: p.to_owned(), source };
    let mut p = path.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).map_err(|e| io(&p, e))?;
                p = match p.parent() {
                    Some(d) if target.is_relative() => d.join(target),
                    _ => target,
                };
            }
            _ => break,
        }
    }
    let name =
        p.file_name().ok_or_else(|| LedgerError::Path(format!("{} does not name a file", path.display())))?.to_owned();
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    Ok(dir.canonicalize().map_err(|e| io(&dir, e))?.join(name))
}

/// Where the ledger at `ledger_path` says its run directory and workspace are (see the module docs
/// of [`crate::ledger`], *Locations*). Errors when a location is unsafe.
pub fn locate(ledger_path: &Path, header: &Header) -> Result<Locations, LedgerError> {
    let resolved = resolve_existing(ledger_path);
    let dir = resolved.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
    if header.version == 1 {
        super::files::check_relative(&header.run_dir)?;
        let ws = dir
            .ancestors()
            .find(|a| a.join(&header.run_dir).is_dir())
            .or_else(|| dir.ancestors().find(|a| a.join(".git").exists()))
            .or_else(|| dir.parent())
            .unwrap_or(&dir)
            .to_owned();
        return Ok(Locations { run: ws.join(&header.run_dir), workspace: ws });
    }
    let bad = |m: String| LedgerError::Path(format!("ledger {}: header location {m}", ledger_path.display()));
    check_location(&header.run_dir).map_err(bad)?;
    let ws = header.workspace.as_deref().ok_or_else(|| bad("`workspace` is missing".into()))?;
    check_location(ws).map_err(bad)?;
    let at = |rel: &str| if rel == "." { dir.clone() } else { dir.join(rel) };
    Ok(Locations { run: at(&header.run_dir), workspace: at(ws) })
}

fn resolve_existing(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|_| std::env::current_dir().map(|c| c.join(path)).unwrap_or_else(|_| path.to_owned()))
}

/// The roots for checking a ledger's files on this machine, from the ledger's own location (never the
/// working directory): `data` is `<mirror>/cosmosqa` when a mirror is given, else `data_dir` (the
/// recorded config's `data.dir`, which must be a safe relative path) under the workspace.
pub fn roots_for(
    ledger_path: &Path,
    header: &Header,
    data_dir: Option<&str>,
    mirror: Option<&Path>,
) -> Result<super::Roots, LedgerError> {
    let loc = locate(ledger_path, header)?;
    let data = match (mirror, data_dir) {
        (Some(m), _) => Some(m.join("cosmosqa")),
        (None, Some(d)) if super::files::check_relative(d).is_ok() => Some(loc.workspace.join(d)),
        _ => None,
    };
    Ok(super::Roots { run: Some(loc.run), data, workspace: Some(loc.workspace) })
}

/// Default output directory of `hsx reproduce`: `<run dir>-reproduce-<stamp>` beside the recorded run
/// directory, relative to the working directory when it lies below it.
pub fn default_reproduce_dir(ledger_path: &Path, header: &Header, stamp: i64) -> PathBuf {
    let run = locate(ledger_path, header).map(|l| l.run).unwrap_or_else(|_| PathBuf::from("runs/reproduction"));
    let run = run.canonicalize().unwrap_or(run);
    let name = run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    let out = run.with_file_name(format!("{name}-reproduce-{stamp}"));
    match std::env::current_dir().ok().and_then(|c| out.strip_prefix(c).ok().map(Path::to_owned)) {
        Some(rel) if !rel.as_os_str().is_empty() => rel,
        _ => out,
    }
}
