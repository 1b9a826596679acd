//! Files and folders that hold personal data, created readable by their
//! owner only (files 0600, folders 0700), whatever the process's umask.
//!
//! The SQLite database, the outbox's messages, the rejects of an import and
//! a saved preview all carry addresses and names: under the usual umask 022
//! they were world-readable. The mode is given at creation and set again
//! afterwards, so a file that already existed with wider rights is narrowed
//! too. PostgreSQL's files are the server's business.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) a file for writing, mode 0600.
pub fn create(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Makes sure a file exists, leaving its content alone, with mode 0600.
pub fn touch(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
}

/// Narrows an existing file to 0600; a missing one is fine.
pub fn narrow(path: &Path) -> io::Result<()> {
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates a folder and its missing parents, the folder itself mode 0700.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Writes a whole file, mode 0600.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_hold_whatever_the_file_was() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        touch(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "x");
        write(&d.path().join("b"), b"y").unwrap();
        assert_eq!(mode(&d.path().join("b")), 0o600);
        let sub = d.path().join("x/y");
        create_dir_all(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        narrow(&d.path().join("missing")).unwrap();
    }
}
