//! Small durable-file helpers: private directories and files, directory
//! fsync, and an atomic create that never replaces an existing file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by the owner only, and makes
/// each new entry durable in its parent.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    // Every directory this call creates, `dir` first: a crash must not lose
    // one (and all that was written below it) from its parent.
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|path| !path.as_os_str().is_empty() && !path.is_dir())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    for created in missing {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            // A relative path's first component is made in the working directory.
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Open options for a file only its owner may read (0600 on Unix).
pub(crate) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes renames and creations inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Other platforms cannot open a directory as a file; their rename is
    // made durable by the file system itself (NTFS journals metadata).
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably, unless `path` exists:
/// returns `Ok(false)` then, leaving the existing file untouched (so two
/// processes racing to create it agree on one content).
pub(crate) fn create_new_durably(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = private_file_options().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // A hard link fails if the target exists, where a rename would replace it.
        match fs::hard_link(&tmp, path) {
            Ok(()) => {
                sync_dir(dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}
