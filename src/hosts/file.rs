//! Putting a file's new contents in place ([`replace_file`]): a temp file renamed over it, so
//! readers see the old or the new file, or where that cannot work (a bind mount such as
//! Docker's /etc/hosts) a rewrite in place that never leaves it empty.

use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::debug;

/// How [`replace_file`] put the new contents in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A temp file in the same directory, renamed over the file: readers see the old or the
    /// new file, never a mix.
    Renamed,
    /// Rewritten in place, because the file could not be replaced (a bind mount).
    InPlace,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Renamed => "renamed into place",
            WriteMode::InPlace => "rewritten in place",
        })
    }
}

/// A failed attempt at the rename path: either it cannot work for this file and the in-place
/// write should be used, or it failed for real.
enum RenameError {
    Fallback(io::Error),
    Fatal(io::Error),
}

fn fallback_on(kinds: &[io::ErrorKind]) -> impl Fn(io::Error) -> RenameError + '_ {
    move |e| {
        if kinds.contains(&e.kind()) {
            RenameError::Fallback(e)
        } else {
            RenameError::Fatal(e)
        }
    }
}

/// Replaces the contents of `path`: written to a temp file in the same directory (with the
/// file's mode and owner), fsynced and renamed over it. Where the rename cannot work (a bind
/// mount: EBUSY or EXDEV; a directory we cannot write; an owner we cannot give the temp file)
/// the file is rewritten in place instead: written from the start without truncating, cut to
/// length, fsynced. A symlink is followed, so the link stays a link.
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<WriteMode> {
    let target = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let meta = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match write_renamed(&target, meta.as_ref(), contents) {
        Ok(()) => Ok(WriteMode::Renamed),
        Err(RenameError::Fallback(e)) if meta.is_some() => {
            debug!(path = %target.display(), error = %e, "cannot replace the file; rewriting it in place");
            write_in_place(&target, contents)?;
            Ok(WriteMode::InPlace)
        }
        Err(RenameError::Fallback(e) | RenameError::Fatal(e)) => Err(e),
    }
}

fn write_renamed(
    target: &Path,
    meta: Option<&std::fs::Metadata>,
    contents: &[u8],
) -> Result<(), RenameError> {
    use io::ErrorKind::{CrossesDevices, PermissionDenied, ReadOnlyFilesystem, ResourceBusy};
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.zkdns-{}.tmp", std::process::id()));
    let mode = meta.map_or(0o644, |m| m.mode() & 0o7777);
    // a temp file of ours left by a crash of a process with our pid
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(fallback_on(&[PermissionDenied, ReadOnlyFilesystem]))?;
    let result = (|| {
        // the umask may have cleared bits of the mode
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(RenameError::Fatal)?;
        if let Some(m) = meta {
            let own = file.metadata().map_err(RenameError::Fatal)?;
            if (own.uid(), own.gid()) != (m.uid(), m.gid()) {
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))
                    .map_err(fallback_on(&[PermissionDenied]))?;
            }
        }
        file.write_all(contents).map_err(RenameError::Fatal)?;
        file.sync_all().map_err(RenameError::Fatal)
    })()
    .and_then(|()| {
        // closed before the rename: a watcher of the target sees one close-after-write
        drop(file);
        std::fs::rename(&temp, target).map_err(fallback_on(&[ResourceBusy, CrossesDevices]))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    // the rename itself is durable once the directory is
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_in_place(target: &Path, contents: &[u8]) -> io::Result<()> {
    // no O_TRUNC: a reader never sees an empty file, only (briefly) the new text followed by
    // the tail of the old one
    let mut file = std::fs::OpenOptions::new().write(true).open(target)?;
    file.write_all(contents)?;
    file.set_len(contents.len() as u64)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_renames_and_keeps_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!(replace_file(&path, b"new").unwrap(), WriteMode::Renamed);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(after.mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(after.ino(), before.ino(), "a rename gives a new inode");
        // nothing left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_file_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn in_place_write_shrinks_and_keeps_the_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "a much longer old text\n").unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        write_in_place(&path, b"short\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short\n");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    }
}
