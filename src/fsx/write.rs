//! Writing below a root: see the module docs of [`crate::fsx`].
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::{kind_name, split, stat_name, temp_name, walk, FsError, Limit};

/// How [`write_opts`] creates its file.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Permission bits of the file (less the umask for a new one). `None`: an existing destination
    /// keeps its bits; a new file gets 0o666 less the umask.
    pub mode: Option<u32>,
    /// Refuse a destination that already exists (a new signing key).
    pub create_new: bool,
}

/// Writes `bytes` to `path` (below `root`): checked, through a temporary file, renamed into place.
pub fn write(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_opts(root, path, bytes, WriteOptions::default())
}

/// [`write()`] with a mode, or refusing to replace a file.
pub fn write_opts(root: &Path, path: &Path, bytes: &[u8], opts: WriteOptions) -> Result<(), FsError> {
    write_inner(root, path, opts, |w| w.write_all(bytes).map_err(|e| FsError::io(path, e)))
}

/// Streams into `path` (below `root`): `fill` writes the temporary file; on its error nothing is
/// replaced and the temporary file is removed.
pub fn write_with<T, E: From<FsError>>(
    root: &Path,
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
) -> Result<T, E> {
    write_inner(root, path, WriteOptions::default(), fill)
}

/// Whether `name` in `dir` may be replaced: absent, or a regular file with one link. Its permission
/// bits when it exists.
fn check_destination(dir: impl AsFd, name: &OsStr, path: &Path, create_new: bool) -> Result<Option<u32>, FsError> {
    match stat_name(dir, name, path)? {
        None => Ok(None),
        Some(_) if create_new => Err(FsError::refused(path, "already exists, and hsx does not replace it")),
        Some((FileType::RegularFile, 1, mode)) => Ok(Some(mode)),
        Some((FileType::RegularFile, links, _)) => Err(FsError::refused(
            path,
            format!(
                "is a hard link ({links} names for one file): writing it would change the file under its other \
                 names too; remove this name first"
            ),
        )),
        Some((ft, _, _)) => Err(FsError::refused(
            path,
            format!("is {}; hsx replaces regular files only and follows no symbolic link", kind_name(ft)),
        )),
    }
}

/// Whether [`write()`] would accept `path` below `root` (without writing anything): the checks a writer
/// makes before its first byte, for a caller that writes two files and must refuse before the first.
pub fn check_writable(root: &Path, path: &Path) -> Result<(), FsError> {
    let (parts, name) = split(root, path)?;
    match walk(root, &parts, None, path) {
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
        Ok(dir) => check_destination(&dir, name, path, false).map(drop),
    }
}

fn write_inner<T, E: From<FsError>>(
    root: &Path,
    path: &Path,
    opts: WriteOptions,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
) -> Result<T, E> {
    let (parts, name) = split(root, path)?;
    let dir = walk(root, &parts, Some(0o777), path)?;
    let existing = check_destination(&dir, name, path, opts.create_new)?;
    let tmp = temp_name(name);
    let mode = opts.mode.or(existing).unwrap_or(0o666);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, &tmp, flags, Mode::from_bits_truncate(mode)).map_err(|e| FsError::io(path, e))?;
    let io = |e: std::io::Error| FsError::io(path, e);
    let result = (|| -> Result<T, E> {
        let file = File::from(fd);
        if let (Some(bits), None) = (existing, opts.mode) {
            // The umask may have taken bits off: the ledger keeps its mode exactly.
            rustix::fs::fchmod(&file, Mode::from_bits_truncate(bits)).map_err(|e| io(e.into()))?;
        }
        let mut w = BufWriter::new(file);
        let value = fill(&mut w)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        if opts.create_new {
            rustix::fs::linkat(&dir, &tmp, &dir, name, AtFlags::empty()).map_err(|e| match e {
                Errno::EXIST => FsError::refused(path, "already exists, and hsx does not replace it"),
                e => io(e.into()),
            })?;
        } else {
            // Checked again just before the rename: a link planted while the file was written is refused.
            check_destination(&dir, name, path, false)?;
            rustix::fs::renameat(&dir, &tmp, &dir, name).map_err(|e| io(e.into()))?;
        }
        rustix::fs::fsync(&dir).map_err(|e| io(e.into()))?;
        Ok(value)
    })();
    if result.is_err() || opts.create_new {
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    }
    result
}

/// Creates the directory `path` below `root` and every missing one on the way, refusing a symbolic
/// link or a `..` on the way.
pub fn create_dirs(root: &Path, path: &Path) -> Result<(), FsError> {
    if path == root {
        return super::open_root(root, true).map(drop);
    }
    let (mut parts, name) = split(root, path)?;
    parts.push(name);
    walk(root, &parts, Some(0o777), path).map(drop)
}

/// Opens (creating it if needed) the lock file `path` below `root` for reading and writing, without
/// following a symbolic link and without blocking; anything but a regular file with one link is refused.
pub fn lock(root: &Path, path: &Path) -> Result<File, FsError> {
    let (parts, name) = split(root, path)?;
    let dir = walk(root, &parts, Some(0o777), path)?;
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::from_bits_truncate(0o666)).map_err(|e| match e {
        Errno::LOOP | Errno::ISDIR | Errno::NXIO => {
            let what =
                stat_name(&dir, name, path).ok().flatten().map(|(ft, _, _)| kind_name(ft)).unwrap_or("not a file");
            FsError::refused(
                path,
                format!("is {what}; a lock file must be a regular file (hsx follows no link to one)"),
            )
        }
        e => FsError::io(path, e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
    let ft = FileType::from_raw_mode(std::os::unix::fs::MetadataExt::mode(&meta));
    if ft != FileType::RegularFile {
        return Err(FsError::refused(path, format!("is {}; a lock file must be a regular file", kind_name(ft))));
    }
    let links = std::os::unix::fs::MetadataExt::nlink(&meta);
    if links > 1 {
        return Err(FsError::refused(
            path,
            format!("is a hard link ({links} names for one file); a lock file must have one name: remove it"),
        ));
    }
    Ok(file)
}

/// Removes the file `path` below `root` (a symbolic link there is removed, never followed). `false`
/// when there was none.
pub fn remove_file(root: &Path, path: &Path) -> Result<bool, FsError> {
    let (parts, name) = split(root, path)?;
    let dir = match walk(root, &parts, None, path) {
        Err(e) if e.is_not_found() => return Ok(false),
        other => other?,
    };
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(FsError::io(path, e)),
    }
}

/// Moves the directory `from` to `to`, two paths in one directory the user chose (an export staged beside
/// its destination, then published whole): links in that directory's own path are followed, as for any
/// path a user names; an existing `to` is never replaced (RENAME_NOREPLACE), so nothing that appeared there
/// meanwhile is lost.
pub fn publish_dir(from: &Path, to: &Path) -> Result<(), FsError> {
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, rustix::fs::RenameFlags::NOREPLACE).map_err(
        |e| match e {
            Errno::EXIST | Errno::NOTEMPTY => {
                FsError::refused(to, "appeared while the export was written; nothing replaced")
            }
            e => FsError::io(to, e),
        },
    )
}

/// Copies the regular file `src` (below `src_root`, at most `limit`) to `dst` (below `dst_root`), through
/// the same checks as every read and write. Returns the bytes copied.
pub fn copy(src_root: &Path, src: &Path, limit: Limit, dst_root: &Path, dst: &Path) -> Result<u64, FsError> {
    let mut from = super::open(src_root, src, limit)?;
    write_with(dst_root, dst, |w| std::io::copy(&mut from, w).map_err(|e| FsError::io(src, e)))
}

/// For writers that only take a path (libtorch, plotters, tokenizers): `produce` writes the file at
/// the path it is given, inside a private (0700) temporary directory in `path`'s directory; the file
/// must then be a regular file with one link, and is moved to `path` through the checks of [`write()`].
/// The temporary directory is removed whatever happens.
pub fn place_file<T, E: From<FsError>>(
    root: &Path,
    path: &Path,
    produce: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let (parts, name) = split(root, path)?;
    let dir = walk(root, &parts, Some(0o777), path)?;
    check_destination(&dir, name, path, false)?;
    let tmp = temp_name(name);
    rustix::fs::mkdirat(&dir, &tmp, Mode::from_bits_truncate(0o700)).map_err(|e| FsError::io(path, e))?;
    let io = |e: Errno| FsError::io(path, e);
    let result = (|| -> Result<T, E> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let private = rustix::fs::openat(&dir, &tmp, flags, Mode::empty()).map_err(io)?;
        let fallback = path.parent().unwrap_or(root).join(&tmp);
        let value = produce(&super::fd_path(&private, &fallback, name))?;
        match stat_name(&private, name, path)? {
            Some((FileType::RegularFile, 1, _)) => {}
            None => return Err(FsError::refused(path, "was not written (the writer left no file)").into()),
            Some((ft, links, _)) => {
                return Err(FsError::refused(
                    path,
                    format!("the writer left {} with {links} link(s), not a regular file of its own", kind_name(ft)),
                )
                .into())
            }
        }
        let written =
            rustix::fs::openat(&private, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(io)?;
        rustix::fs::fsync(&written).map_err(io)?;
        check_destination(&dir, name, path, false)?;
        rustix::fs::renameat(&private, name, &dir, name).map_err(io)?;
        rustix::fs::fsync(&dir).map_err(io)?;
        Ok(value)
    })();
    remove_tree(&dir, &tmp);
    result
}

/// Removes the directory `name` in `dir` and everything in it, following no symbolic link (best effort:
/// a private temporary directory).
fn remove_tree(dir: &OwnedFd, name: &OsStr) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if let Ok(sub) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
        if let Ok(mut entries) = rustix::fs::Dir::read_from(&sub) {
            let mut names = Vec::new();
            while let Some(Ok(e)) = entries.read() {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push((<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n).to_os_string(), e.file_type()));
                }
            }
            for (n, ft) in names {
                // A directory (or an entry whose type the directory listing did not say) is emptied first.
                if ft == FileType::Directory || rustix::fs::unlinkat(&sub, &n, AtFlags::empty()) == Err(Errno::ISDIR) {
                    remove_tree(&sub, &n);
                }
            }
        }
    }
    let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
}
