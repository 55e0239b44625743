//! Bundle archives (`bundle.tar.zst`): deterministic packing and safe,
//! bounded unpacking.
//!
//! [`pack_dir`] turns a bundle directory into byte-identical archives for the
//! same content. [`unpack`] and [`list`] read untrusted archives: only regular
//! files and directories with safe relative paths are accepted, every size is
//! capped while decompressing (see [`UnpackLimits`]), and nothing is ever
//! written outside the destination directory.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::ManifestError;

mod pack;
mod unpack;

pub use pack::{PACK_WINDOW_LOG, PACK_ZSTD_LEVEL, PackError, pack_dir};
pub use unpack::{list, unpack};

/// File name of a bundle archive in object storage and on disk.
pub const BUNDLE_FILE_NAME: &str = "bundle.tar.zst";

const MIB: u64 = 1024 * 1024;

/// Default cap on the uncompressed size of all files in a bundle: 512 MiB.
///
/// A bundle holds a few components (StarlingMonkey ones are ~12 MB), one
/// precompiled artifact per target (~36 MB each) and a static UI; 512 MiB
/// leaves room for several targets while bounding the disk and time one
/// bundle can cost.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 512 * MIB;

/// Default cap on the number of entries (files and directories): 20,000.
///
/// A built UI has hundreds of files at most; the cap bounds per-entry work
/// (headers, inodes, index size) that a tiny archive could otherwise demand.
pub const DEFAULT_MAX_FILES: u64 = 20_000;

/// Default cap on one file: 128 MiB.
///
/// The largest legitimate files are precompiled artifacts (~36 MB) and
/// components (~12 MB); the cap leaves 3x headroom.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 128 * MIB;

/// Largest `manifest.json` read into memory: 1 MiB. Real manifests are a few
/// KiB; the cap keeps JSON parsing cheap.
pub const MAX_MANIFEST_BYTES: u64 = MIB;

/// Largest zstd window accepted when decoding: 2^27 bytes (128 MiB).
///
/// Decoder memory grows with the window a frame declares, so a frame asking
/// for more is refused before anything is allocated (B-05). 2^27 is also
/// libzstd's own default limit, so every archive the `zstd` tool makes
/// without `--long` decodes.
pub const MAX_WINDOW_LOG: u32 = 27;

/// Caps enforced while unpacking or listing an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most bytes of file content in all, after decompression.
    pub max_total_bytes: u64,
    /// Most entries (files and directories).
    pub max_files: u64,
    /// Most bytes in one file.
    pub max_file_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_files: DEFAULT_MAX_FILES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Size and hash of one file in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Digest,
}

/// Every file of a bundle by normalised relative path (`/`-separated, no
/// leading `./`); directories are not listed.
pub type FileIndex = BTreeMap<String, FileMeta>;

/// Why an archive was rejected by [`unpack`] or [`list`].
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The zstd stream is corrupt (bad magic, bad block, checksum mismatch).
    #[error("bundle is not a valid zstd stream: {reason}")]
    Decompress {
        /// What the decoder reported.
        reason: String,
    },
    /// The tar structure is corrupt (bad header checksum, truncated entry,
    /// data after the end marker, oversized extension headers).
    #[error("bundle is not a valid tar archive: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// Decompressing needs more than `limit` bytes: either the content exceeds
    /// the total cap or a zstd frame declares a window above 2^27 bytes.
    #[error("bundle is too large: decompressing it needs more than {limit} bytes")]
    TooLarge {
        /// The cap that was hit, in bytes.
        limit: u64,
    },
    /// More entries than allowed.
    #[error("bundle has more than {limit} entries")]
    TooManyFiles {
        /// The entry cap.
        limit: u64,
    },
    /// One file is larger than allowed.
    #[error("bundle file `{path}` is larger than {limit} bytes")]
    FileTooLarge {
        /// The file's path in the archive.
        path: String,
        /// The per-file cap, in bytes.
        limit: u64,
    },
    /// An entry that may not appear in a bundle: a link or special file, an
    /// unsafe or duplicate path, a PAX header contradicting the tar header.
    #[error("invalid bundle entry `{path}`: {reason}")]
    InvalidEntry {
        /// The entry's path as written (non-printable bytes escaped).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No `manifest.json` at the archive root.
    #[error("bundle has no manifest.json at its root")]
    MissingManifest,
    /// `manifest.json` is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Writing the unpacked files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being written.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    /// Stable machine-readable code for API responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEntry { .. } => "bundle_invalid_entry",
            Self::TooLarge { .. } | Self::TooManyFiles { .. } | Self::FileTooLarge { .. } => "bundle_too_large",
            Self::MissingManifest | Self::Manifest(_) => "bundle_invalid_manifest",
            Self::Decompress { .. } | Self::Malformed { .. } => "bundle_corrupt",
            Self::Io { .. } => "bundle_io",
        }
    }
}

#[cfg(test)]
mod tests;
