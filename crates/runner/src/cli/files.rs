//! File helpers the commands share: where a public key goes, and
//! creating a file that must not exist yet.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where `keygen` puts the public key: `key.pem` → `key.pub.pem`, any other
/// name gets `.pub.pem` appended.
pub fn public_key_path(private: &Path) -> PathBuf {
    beside_key(private, "pub.pem")
}

/// The file next to the private key `private` named for its public part:
/// its name without `.pem`, then `.{suffix}`.
pub fn beside_key(private: &Path, suffix: &str) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.{suffix}"))
}

/// Create `path` (failing if it exists) with `mode` on Unix and write it.
///
/// # Errors
/// The path exists or cannot be written, named.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
