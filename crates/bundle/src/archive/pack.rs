//! Deterministic packing of a bundle directory into `bundle.tar.zst` bytes.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{MAX_MANIFEST_BYTES, UnpackLimits};
use crate::manifest::{MANIFEST_FILE_NAME, Manifest, ManifestError};
use crate::relpath;

/// zstd level used by [`pack_dir`]: 10.
///
/// Packing a 12 MB component plus a 36 MB precompiled artifact takes seconds
/// at this level (level 19 takes tens of seconds on a 2-core machine for a few
/// percent smaller output); decompression speed does not depend on the level.
/// Part of the output format: changing it changes every bundle's digest.
pub const PACK_ZSTD_LEVEL: i32 = 10;

/// zstd window used by [`pack_dir`]: 2^23 bytes (8 MiB).
///
/// Pinned rather than taken from the level's defaults, so that the output
/// depends only on the content; well under the 2^27 the unpacker accepts.
pub const PACK_WINDOW_LOG: u32 = 23;

/// Top-level names copied into a bundle besides `manifest.json`; everything
/// else in the directory (sources, build output, hidden files) is left out.
const INCLUDED_NAMES: [&str; 6] = ["dist", "ui", "precompiled", "wit", "SIGNATURE", "sbom.spdx.json"];

/// Why a directory could not be packed. Messages name the file or manifest
/// field, so a CLI can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The directory has no `manifest.json`.
    #[error("{dir}: no manifest.json in the bundle directory")]
    MissingManifest {
        /// The bundle directory.
        dir: String,
    },
    /// `manifest.json` is invalid; every problem is listed, one per line.
    #[error("{}", join_lines(.0))]
    Manifest(Vec<ManifestError>),
    /// A file the manifest names is not in the directory.
    #[error("manifest.json: field `{field}`: `{path}` is not a file in the bundle directory")]
    MissingFile {
        /// The manifest field naming it, like `api.endpoints[0].handler`.
        field: String,
        /// The path inside the bundle.
        path: String,
    },
    /// A symlink, socket, device or FIFO among the included files.
    #[error("{path}: symbolic links and special files cannot be packed")]
    SpecialFile {
        /// The path inside the bundle.
        path: String,
    },
    /// A file name that would not unpack safely.
    #[error("{path}: {reason}")]
    InvalidPath {
        /// The path inside the bundle (lossy if not UTF-8).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file larger than an unpacker accepts by default.
    #[error("{path}: {size} bytes is more than the {limit} bytes a bundle file may have")]
    FileTooLarge {
        /// The path inside the bundle.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The per-file limit in bytes.
        limit: u64,
    },
    /// More entries than an unpacker accepts by default.
    #[error("the bundle would have {count} entries, more than the limit of {limit}")]
    TooManyFiles {
        /// Files and directories that would be packed.
        count: u64,
        /// The entry limit.
        limit: u64,
    },
    /// More content than an unpacker accepts by default.
    #[error("the bundle would hold {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Total file bytes.
        size: u64,
        /// The total limit in bytes.
        limit: u64,
    },
    /// Reading the directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being read.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tar or zstd encoder failed.
    #[error("building the archive failed: {source}")]
    Encode {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn join_lines(errors: &[ManifestError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// One thing to archive, by bundle path.
#[derive(Debug)]
enum Item {
    Dir { path: String },
    File { path: String, source: PathBuf },
}

impl Item {
    fn path(&self) -> &str {
        match self {
            Item::Dir { path } | Item::File { path, .. } => path,
        }
    }
}

/// Packs a bundle directory into a deterministic `bundle.tar.zst`.
///
/// The same directory content always gives byte-identical output (and so the
/// same digest): entries are sorted by path with directories before their
/// contents, in ustar format with mtime 0, uid/gid 0, empty owner names and
/// modes 0o644 (files) and 0o755 (directories), compressed at a fixed zstd
/// level and window with content size and checksum. Only `manifest.json` and
/// the top-level `dist/`, `ui/`, `precompiled/`, `wit/`, `SIGNATURE` and
/// `sbom.spdx.json` are included; hidden files (names starting with `.`) are
/// skipped at every level.
///
/// # Errors
///
/// Fails when `manifest.json` is missing or invalid, when the manifest's
/// `entry` or an endpoint handler's component is not in the directory, when
/// an included path is a symlink or special file or would not unpack safely,
/// when the bundle would exceed the default [`UnpackLimits`], or on I/O errors.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, PackError> {
    let manifest_path = dir.join(MANIFEST_FILE_NAME);
    match fs::symlink_metadata(&manifest_path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(PackError::SpecialFile {
                path: MANIFEST_FILE_NAME.to_owned(),
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(PackError::MissingManifest {
                dir: dir.display().to_string(),
            });
        }
        Err(err) => return Err(io_error(&manifest_path, err)),
    }
    let manifest_bytes = fs::read(&manifest_path).map_err(|err| io_error(&manifest_path, err))?;
    let manifest = Manifest::check(&manifest_bytes).map_err(PackError::Manifest)?;

    let mut items = vec![Item::File {
        path: MANIFEST_FILE_NAME.to_owned(),
        source: manifest_path,
    }];
    for name in INCLUDED_NAMES {
        let source = dir.join(name);
        match fs::symlink_metadata(&source) {
            Ok(meta) => collect(name.to_owned(), source, &meta, &mut items)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(&source, err)),
        }
    }
    // Component-wise order: a directory comes right before its contents.
    items.sort_by(|a, b| a.path().split('/').cmp(b.path().split('/')));

    let files: BTreeSet<&str> = items
        .iter()
        .filter(|item| matches!(item, Item::File { .. }))
        .map(Item::path)
        .collect();
    for (field, path) in manifest.required_files() {
        if !files.contains(path.as_str()) {
            return Err(PackError::MissingFile { field, path });
        }
    }

    let tar = build_tar(&items)?;
    compress(&tar)
}

/// Adds `path` (and, for a directory, everything below it) to `items`.
fn collect(path: String, source: PathBuf, meta: &fs::Metadata, items: &mut Vec<Item>) -> Result<(), PackError> {
    if meta.is_file() {
        items.push(Item::File { path, source });
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(PackError::SpecialFile { path });
    }
    let children = fs::read_dir(&source).map_err(|err| io_error(&source, err))?;
    items.push(Item::Dir { path: path.clone() });
    for child in children {
        let child = child.map_err(|err| io_error(&source, err))?;
        let name = child.file_name();
        let Some(name) = name.to_str() else {
            return Err(PackError::InvalidPath {
                path: format!("{path}/{}", name.to_string_lossy()),
                reason: "file name is not valid UTF-8".to_owned(),
            });
        };
        if name.starts_with('.') {
            continue;
        }
        let child_path = format!("{path}/{name}");
        if let Err(problem) = relpath::check(&child_path) {
            return Err(PackError::InvalidPath {
                path: child_path,
                reason: format!("path {problem}"),
            });
        }
        let child_source = child.path();
        let child_meta = fs::symlink_metadata(&child_source).map_err(|err| io_error(&child_source, err))?;
        collect(child_path, child_source, &child_meta, items)?;
    }
    Ok(())
}

/// Writes the sorted items as a ustar archive, checking the default unpack
/// limits on the way so that a packed bundle always unpacks.
fn build_tar(items: &[Item]) -> Result<Vec<u8>, PackError> {
    let limits = UnpackLimits::default();
    let count = items.len() as u64;
    if count > limits.max_files {
        return Err(PackError::TooManyFiles {
            count,
            limit: limits.max_files,
        });
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut total: u64 = 0;
    for item in items {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir { path } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                append(&mut builder, &mut header, path, &[])?;
            }
            Item::File { path, source } => {
                let data = fs::read(source).map_err(|err| io_error(source, err))?;
                let size = data.len() as u64;
                let limit = if path == MANIFEST_FILE_NAME {
                    MAX_MANIFEST_BYTES
                } else {
                    limits.max_file_bytes
                };
                if size > limit {
                    return Err(PackError::FileTooLarge {
                        path: path.clone(),
                        size,
                        limit,
                    });
                }
                total += size;
                if total > limits.max_total_bytes {
                    return Err(PackError::TooLarge {
                        size: total,
                        limit: limits.max_total_bytes,
                    });
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(size);
                append(&mut builder, &mut header, path, &data)?;
            }
        }
    }
    builder.into_inner().map_err(|source| PackError::Encode { source })
}

/// Appends one entry. Paths too long for ustar's name and prefix fields
/// (100 + 155 bytes) go in a PAX `path` record, which every modern tar reads.
fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    header: &mut tar::Header,
    path: &str,
    data: &[u8],
) -> Result<(), PackError> {
    let encode = |source| PackError::Encode { source };
    if header.set_path(path).is_err() {
        builder
            .append_pax_extensions([("path", path.as_bytes())])
            .map_err(encode)?;
        // Leave the header's own name empty: the PAX record is the name.
        header.as_old_mut().name = [0; 100];
        if let Some(ustar) = header.as_ustar_mut() {
            ustar.prefix = [0; 155];
        }
    }
    header.set_cksum();
    builder.append(header, data).map_err(encode)
}

fn compress(tar: &[u8]) -> Result<Vec<u8>, PackError> {
    let encode = |source| PackError::Encode { source };
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), PACK_ZSTD_LEVEL).map_err(encode)?;
    encoder.window_log(PACK_WINDOW_LOG).map_err(encode)?;
    encoder.include_checksum(true).map_err(encode)?;
    encoder.include_contentsize(true).map_err(encode)?;
    encoder.set_pledged_src_size(Some(tar.len() as u64)).map_err(encode)?;
    encoder.write_all(tar).map_err(encode)?;
    encoder.finish().map_err(encode)
}

fn io_error(path: &Path, source: io::Error) -> PackError {
    PackError::Io {
        path: path.display().to_string(),
        source,
    }
}
