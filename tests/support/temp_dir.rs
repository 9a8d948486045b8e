//! A directory of one test's own, empty when made and removed when dropped: shared by the
//! integration tests (each uses part of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `$TMPDIR/hs-<test file>-<pid>-<name>`: tests of one file run at once, and so may the
    /// suite twice.
    pub fn new(name: &str) -> TempDir {
        let test = module_path!().split("::").next().unwrap_or("test");
        let dir = std::env::temp_dir().join(format!("hs-{test}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
