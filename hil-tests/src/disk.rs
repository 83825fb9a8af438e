//! A small file system for a test: a size-limited tmpfs mounted on a
//! directory (the tests run as root), unmounted when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
    /// The temporary directory when [`SmallDisk::mount`] made one (removed after the unmount).
    owned: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// A tmpfs of `size` (`"6m"`, `"64k"`) on a fresh temporary directory.
    pub fn mount(size: &str) -> std::io::Result<SmallDisk> {
        let dir = tempfile::tempdir()?;
        let mut disk = SmallDisk::mount_on(dir.path(), size)?;
        disk.owned = Some(dir);
        Ok(disk)
    }

    /// A tmpfs of `size` on `path` (created if missing).
    pub fn mount_on(path: &Path, size: &str) -> std::io::Result<SmallDisk> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(
                "mounting a tmpfs needs root (CI runs as root)",
            ));
        }
        Ok(SmallDisk {
            path: path.to_owned(),
            owned: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the disk to the last byte with `name`; returns its path.
    pub fn fill(&self, name: &str) -> std::io::Result<PathBuf> {
        use std::io::Write as _;
        let path = self.path.join(name);
        let mut file = std::fs::File::create(&path)?;
        let block = vec![0_u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e),
            }
        }
        // The last partial block, byte by byte.
        while let Ok(1) = file.write(&[0]) {}
        Ok(path)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        drop(self.owned.take());
    }
}
