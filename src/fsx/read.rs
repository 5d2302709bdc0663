//! Reading files hsx did not write in this run: see the module docs of [`crate::fsx`].
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{kind_name, split, walk, FsError, Limit};

/// An open regular file that can be read up to its kind's [`Limit`]: a read past the limit (the file
/// grew after it was opened) fails instead of going on.
#[derive(Debug)]
pub struct Bounded {
    file: File,
    path: PathBuf,
    limit: Limit,
    size: u64,
    seen: u64,
}

impl Bounded {
    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file itself (its metadata, a second handle), for readers that need more than `Read`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file without the bound, for readers that seek within a file whose size they checked.
    pub fn into_file(self) -> File {
        self.file
    }

    /// A path that names this open file, for readers that only take a path (libtorch's safetensors
    /// reader): `/proc/self/fd/N` where the kernel offers it, so the file checked is the file read; else
    /// the file's own path.
    pub fn reopen_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        let proc = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if proc.exists() {
            proc
        } else {
            self.path.clone()
        }
    }

    /// The whole file (at most its limit).
    pub fn read_all(mut self) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::with_capacity(self.size.min(self.limit.bytes) as usize);
        self.read_to_end(&mut out).map_err(|e| FsError::io(&self.path, e))?;
        Ok(out)
    }

    /// The whole file as UTF-8 text.
    pub fn read_all_string(self) -> Result<String, FsError> {
        let path = self.path.clone();
        String::from_utf8(self.read_all()?).map_err(|e| {
            FsError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
                ),
            )
        })
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // At most one byte past the limit, to tell a file at the limit from one beyond it.
        let room = (self.limit.bytes + 1).saturating_sub(self.seen).min(buf.len() as u64) as usize;
        let n = self.file.read(&mut buf[..room])?;
        self.seen += n as u64;
        if self.seen > self.limit.bytes {
            let e = FsError::TooLarge {
                path: self.path.clone(),
                what: self.limit.what,
                size: self.seen,
                limit: self.limit.bytes,
            };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
        }
        Ok(n)
    }
}

/// The open file, once it is known to be a regular file within its limit.
fn checked(file: File, path: &Path, limit: Limit) -> Result<Bounded, FsError> {
    let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
    let ft = FileType::from_raw_mode(std::os::unix::fs::MetadataExt::mode(&meta));
    if ft != FileType::RegularFile {
        return Err(FsError::refused(path, format!("is {}, not a regular file", kind_name(ft))));
    }
    if meta.len() > limit.bytes {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            what: limit.what,
            size: meta.len(),
            limit: limit.bytes,
        });
    }
    Ok(Bounded { file, path: path.to_owned(), limit, size: meta.len(), seen: 0 })
}

const READ: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK).union(OFlags::CLOEXEC).union(OFlags::NOCTTY);

/// Opens the regular file `path` below `root` for reading, following no symbolic link below the root.
pub fn open(root: &Path, path: &Path, limit: Limit) -> Result<Bounded, FsError> {
    let (parts, name) = split(root, path)?;
    let dir = walk(root, &parts, None, path)?;
    let fd = rustix::fs::openat(&dir, name, READ | OFlags::NOFOLLOW, Mode::empty()).map_err(|e| match e {
        Errno::LOOP => FsError::refused(
            path,
            format!("is a symbolic link; below its root {} hsx reads no file through one", root.display()),
        ),
        e => FsError::io(path, e),
    })?;
    checked(File::from(fd), path, limit)
}

/// Reads the regular file `path` below `root` whole (at most `limit`).
pub fn read(root: &Path, path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    open(root, path, limit)?.read_all()
}

/// [`read`] as UTF-8 text.
pub fn read_string(root: &Path, path: &Path, limit: Limit) -> Result<String, FsError> {
    open(root, path, limit)?.read_all_string()
}

/// Opens a file the user named (a config, a ledger, a key, a data file) for reading: its symbolic links
/// are followed, but only a regular file within `limit` is read.
pub fn open_file(path: &Path, limit: Limit) -> Result<Bounded, FsError> {
    let fd = rustix::fs::openat(rustix::fs::CWD, path, READ, Mode::empty()).map_err(|e| FsError::io(path, e))?;
    checked(File::from(fd), path, limit)
}

/// Reads a file the user named whole (at most `limit`): see [`open_file`].
pub fn read_file(path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    open_file(path, limit)?.read_all()
}

/// [`read_file`] as UTF-8 text.
pub fn read_file_string(path: &Path, limit: Limit) -> Result<String, FsError> {
    open_file(path, limit)?.read_all_string()
}
