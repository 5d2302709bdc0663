//! The one way hsx puts a file on disk, and the one way it reads a file it did not write in this run.
//! Every writer (ledger, head, locks, claims, fragments, stage outputs, plots, adapters, tokenizers,
//! models, reports, Slurm state, keys, downloads, reproduce copies, bench outputs) and every reader of
//! a file from outside (ledgers, heads, keys, configs, templates, reports, fragments, Slurm state, stage
//! records, data) goes through this room.
//!
//! **Writes** ([`write()`], [`write_with`], [`write_opts`], [`place_file`], [`create_dirs`], [`copy`]) take
//! a *root*: the directory the write must stay in (the run directory, the ledger's directory, the report
//! directory, or a directory the user named), and a path below it. The root is opened as named (its
//! owner chose it, symbolic links and all); below it every directory is opened with
//! `O_NOFOLLOW | O_DIRECTORY`, one component at a time, and created with `mkdirat` where missing. A path
//! that leaves its root through `..`, passes through a symbolic link or a non-directory, or names a
//! destination that is not a regular file with one link (a symbolic link, a directory, a FIFO, a hard
//! link, whose other name would change too) is refused before a byte is written, with an error that
//! names the path and the reason. The bytes go to a temporary file created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` under an unpredictable name (`.<name>.tmp.<16 random hex digits>`)
//! in the destination's directory, are synced, and are renamed over the destination, and the directory
//! is synced: a process killed at any instant leaves the old file or the new one, never a torn one. On
//! an error the temporary file is removed. An existing destination keeps its permission bits.
//!
//! Writers that only take a path (libtorch's safetensors writer, plotters, tokenizers) go through
//! [`place_file`]: they write into a private (0700) temporary directory in the destination's
//! directory, reached through the open directory handle (`/proc/self/fd/N`) so that no directory can
//! be swapped under them, and the file is then moved in through the same checks.
//!
//! **Locks** ([`lock`]) are opened with `O_NOFOLLOW | O_NONBLOCK` below their root and refused when
//! they are not a regular file with one link.
//!
//! **Reads** of files hsx did not write in this run ([`read`], [`open`], [`read_file`], [`open_file`])
//! open regular files only, with `O_NONBLOCK` (a FIFO never blocks the reader), and check the type on
//! the open handle, so a device (a symbolic link to `/dev/zero`) is refused too. Each kind of file has a
//! size bound ([`Limit`]) checked before reading, and a read stops one byte past it: a file that grows
//! while it is read is refused as well. [`read`] and [`open`] confine the path to a root like a write;
//! [`read_file`] and [`open_file`] read a file the user named (their symbolic links are followed, but
//! never to anything but a regular file).
//!
//! Linux (and other Unix) only: the `*at` calls come from `rustix`.
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

mod read;
mod write;

pub use read::{open, open_file, read, read_file, read_file_string, read_string, Bounded};
pub use write::{
    check_writable, copy, create_dirs, lock, place_file, publish_dir, remove_file, write, write_opts, write_with,
    WriteOptions,
};

/// Why a file was not written or read.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path or the file is unsafe to use: it leaves its root, passes through a symbolic link, or is
    /// not a regular file with one link.
    #[error("{path}: refused: {reason}")]
    Refused { path: PathBuf, reason: String },
    /// The file is larger than the bound for its kind.
    #[error("{path}: refused: {size} bytes or more, over the {limit} byte limit for {what}")]
    TooLarge { path: PathBuf, what: &'static str, size: u64, limit: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The path the error names.
    pub fn path(&self) -> &Path {
        match self {
            FsError::Refused { path, .. } | FsError::TooLarge { path, .. } | FsError::Io { path, .. } => path,
        }
    }

    /// Whether the file (or a directory on its way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn io(path: &Path, source: impl Into<std::io::Error>) -> FsError {
        FsError::Io { path: path.to_owned(), source: source.into() }
    }

    pub(crate) fn refused(path: &Path, reason: impl Into<String>) -> FsError {
        FsError::Refused { path: path.to_owned(), reason: reason.into() }
    }
}

impl From<FsError> for std::io::Error {
    /// For callers whose errors are I/O errors, which name the path themselves: the kind is kept
    /// (`NotFound` stays `NotFound`) and the message is the reason, without the path.
    fn from(e: FsError) -> Self {
        match e {
            FsError::Io { source, .. } => source,
            FsError::Refused { reason, .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("refused: {reason}"))
            }
            FsError::TooLarge { what, size, limit, .. } => std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refused: {size} bytes or more, over the {limit} byte limit for {what}"),
            ),
        }
    }
}

/// The most bytes hsx reads of one kind of file it did not write this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What kind of file, as errors name it.
    pub what: &'static str,
    pub bytes: u64,
}

impl Limit {
    pub const fn new(what: &'static str, bytes: u64) -> Limit {
        Limit { what, bytes }
    }

    /// A ledger (`ledger::MAX_LEDGER_BYTES`).
    pub const LEDGER: Limit = Limit::new("a ledger", 256 << 20);
    /// A signed head (`<ledger>.head.json`).
    pub const HEAD: Limit = Limit::new("a signed head", 64 << 10);
    /// A Slurm job's ledger fragment.
    pub const FRAGMENT: Limit = Limit::new("a ledger fragment", 16 << 20);
    /// A signing key or a `trusted_keys` file.
    pub const KEY: Limit = Limit::new("a key file", 1 << 20);
    /// A directory claim (`.hsx-ledger`) or a lock file's holder.
    pub const CLAIM: Limit = Limit::new("a directory claim", 64 << 10);
    /// A TOML config.
    pub const CONFIG: Limit = Limit::new("a config file", 1 << 20);
    /// A report template.
    pub const TEMPLATE: Limit = Limit::new("a report template", 1 << 20);
    /// A rendered `REPORT.md`.
    pub const REPORT: Limit = Limit::new("a rendered report", 16 << 20);
    /// A JSON document: a stage's record, a model's, adapter's or tokenizer's config, bench input.
    pub const JSON: Limit = Limit::new("a JSON document", 256 << 20);
    /// A data file: CosmosQA CSV or JSONL, a stage's JSONL output.
    pub const DATA: Limit = Limit::new("a data file", 2 << 30);
    /// The Slurm driver's job list (`slurm/jobs.json`).
    pub const HUB_METADATA: Limit = Limit::new("a hub download metadata file", 64 << 10);
    pub const SLURM_STATE: Limit = Limit::new("the Slurm job list", 16 << 20);
    /// Model weights (safetensors), read by libtorch.
    pub const WEIGHTS: Limit = Limit::new("model weights", 64 << 30);
    /// A recorded artifact copied as it is (a reproduction's earlier outputs, the report's plots).
    pub const ARTIFACT: Limit = Limit::new("a recorded artifact", 64 << 30);
}

/// The directory of `path`, as a root for writing or reading `path` itself (`""`, the working
/// directory, for a bare file name): the directory is taken as named, only `path`'s last component is
/// checked.
pub fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// What a file type is called in errors.
pub(crate) fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a regular file",
    }
}

/// `path` relative to `root`, as directory components and a final name. `path` is `root.join(rel)`:
/// a path not below `root`, or with a `..` component, is refused.
pub(crate) fn split<'p>(root: &Path, path: &'p Path) -> Result<(Vec<&'p OsStr>, &'p OsStr), FsError> {
    let rel = path.strip_prefix(root).map_err(|_| {
        FsError::refused(path, format!("is not below the directory {} it must be written in", root.display()))
    })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(FsError::refused(path, format!("leaves its root {} through '..'", root.display())))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(FsError::refused(path, format!("is not below its root {}", root.display())))
            }
        }
    }
    let name = parts.pop().ok_or_else(|| FsError::refused(path, "names no file below its root"))?;
    Ok((parts, name))
}

/// Opens `root` as named (following its symbolic links: whoever named the root chose it); with
/// `create`, a missing root is created first.
pub(crate) fn open_root(root: &Path, create: bool) -> Result<OwnedFd, FsError> {
    let at = if root.as_os_str().is_empty() { Path::new(".") } else { root };
    if create && !at.exists() {
        std::fs::create_dir_all(at).map_err(|e| FsError::io(root, e))?;
    }
    rustix::fs::openat(rustix::fs::CWD, at, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FsError::io(root, e))
}

/// The file type and link count of `name` in `dir`, without following a symbolic link; `None` when
/// there is nothing by that name.
// `st_nlink` is a u64 on x86-64 but a u32 on other Linux targets: the conversion is not useless there.
#[allow(clippy::useless_conversion)]
pub(crate) fn stat_name(dir: impl AsFd, name: &OsStr, path: &Path) -> Result<Option<(FileType, u64, u32)>, FsError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some((FileType::from_raw_mode(st.st_mode), u64::from(st.st_nlink), st.st_mode & 0o7777))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(FsError::io(path, e)),
    }
}

/// Opens the directory `parts` below `root`, component by component, never following a symbolic link;
/// with `create`, missing directories are made with that mode (less the umask). `path` names the
/// whole destination in errors.
pub(crate) fn walk(root: &Path, parts: &[&OsStr], create: Option<u32>, path: &Path) -> Result<OwnedFd, FsError> {
    let mut dir = open_root(root, create.is_some())?;
    let mut below = PathBuf::from(root);
    for part in parts {
        below.push(part);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = match rustix::fs::openat(&dir, *part, flags, Mode::empty()) {
            Err(Errno::NOENT) if create.is_some() => {
                let mode = Mode::from_bits_truncate(create.unwrap_or(0o777));
                match rustix::fs::mkdirat(&dir, *part, mode) {
                    Ok(()) | Err(Errno::EXIST) => rustix::fs::openat(&dir, *part, flags, Mode::empty()),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        dir = match opened {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let what = stat_name(&dir, part, path)?.map(|(ft, _, _)| kind_name(ft)).unwrap_or("not a directory");
                return Err(FsError::refused(
                    path,
                    format!(
                        "{} is {what}; below its root {} hsx follows no symbolic link and writes into real directories only",
                        below.display(),
                        root.display()
                    ),
                ));
            }
            Err(e) => return Err(FsError::io(&below, e)),
        };
    }
    Ok(dir)
}

/// A name for a temporary file or directory beside `name`, that nobody can guess in advance.
pub(crate) fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".tmp.{:016x}", rand::random::<u64>()));
    t
}

/// A path to `name` in the open directory `dir` that does not depend on the directory's path: path-only
/// writers get it, so a directory swapped after the walk cannot redirect them. `/proc/self/fd` where
/// the kernel offers it, else the directory's own path.
pub(crate) fn fd_path(dir: &OwnedFd, fallback: &Path, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let proc = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if proc.is_dir() {
        proc.join(name)
    } else {
        fallback.join(name)
    }
}

#[cfg(test)]
mod tests;
