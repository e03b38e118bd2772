//! The file-IO boundary. Everything durable goes through [`Io`] and [`IoFile`], so the same WAL,
//! hard-state and snapshot code runs over the real disk ([`RealIo`]) and over the simulated,
//! fault-injecting disk ([`crate::SimIo`]).
//!
//! Contract (what the storage code relies on; see docs/storage.md "Media assumptions"):
//! - `write_all_at` data is volatile until `sync_data` returns Ok on that file.
//! - a created, renamed or removed name is volatile until `sync_dir` on its parent returns Ok.
//! - errors are `std::io::Error`; ENOSPC is raw OS error 28, EIO is 5 (SimIo uses the same codes).

use std::io;
use std::path::Path;

/// A directory-level file system.
pub trait Io: Clone + Send + Sync + 'static {
    type File: IoFile;
    /// Held while the data directory is in use; dropping it releases the lock.
    type Lock: Send + Sync + 'static;

    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a file (truncating an existing one) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Names of the regular files in `path`, sorted bytewise.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals of names in the directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing); `WouldBlock` if held.
    fn lock(&self, path: &Path) -> io::Result<Self::Lock>;
}

/// An open file.
pub trait IoFile: Send + 'static {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: data and the metadata needed to read it (size) become durable.
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()>;
    /// Reserves `len_bytes` from offset 0 (fallocate); ENOSPC if the disk is full.
    fn allocate(&mut self, len_bytes: u64) -> io::Result<()>;
    fn len_bytes(&self) -> io::Result<u64>;
}

/// The real file system over std and rustix (Linux semantics).
#[derive(Clone, Copy, Debug, Default)]
pub struct RealIo;

#[derive(Debug)]
pub struct RealFile {
    file: std::fs::File,
}

impl Io for RealIo {
    type File = RealFile;
    type Lock = std::fs::File;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn open(&self, path: &Path) -> io::Result<RealFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(RealFile { file })
    }

    fn create(&self, path: &Path) -> io::Result<RealFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(RealFile { file })
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(io::Error::from)?;
        Ok(file)
    }
}

impl IoFile for RealFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn allocate(&mut self, len_bytes: u64) -> io::Result<()> {
        let result = rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            0,
            len_bytes,
        );
        match result {
            Ok(()) => Ok(()),
            // File systems without fallocate: fall back to a sparse size (ENOSPC then surfaces
            // at write time and is fatal, as documented).
            Err(rustix::io::Errno::OPNOTSUPP) => self
                .file
                .set_len(len_bytes.max(self.file.metadata()?.len())),
            Err(errno) => Err(io::Error::from(errno)),
        }
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
