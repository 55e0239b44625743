//! Reading untrusted archives: [`unpack`] to disk and [`list`] in memory share
//! one validating walk, so both accept and reject exactly the same archives.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;

use tar::EntryType;

use super::{BundleError, FileIndex, FileMeta, MAX_MANIFEST_BYTES, MAX_WINDOW_LOG, UnpackLimits};
use crate::digest::Hasher;
use crate::manifest::{MANIFEST_FILE_NAME, Manifest};
use crate::relpath;

/// Every zstd frame (format version 1) starts with these bytes. Checking them
/// up front keeps libzstd's legacy (pre-1.0) decoders away from bundles.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Most decompressed bytes one entry's headers may take: its 512-byte header,
/// the previous entry's padding and any GNU long-name or PAX extension
/// headers. Real ones take well under 2 KiB; the tar reader holds extension
/// headers in memory, so this is what bounds that memory (B-05).
const MAX_ENTRY_HEADER_BYTES: u64 = 64 * 1024;

/// Stream allowance per entry on top of file content when capping the
/// decompressed tar stream: a header block, padding and a small extension header.
const STREAM_BYTES_PER_ENTRY: u64 = 2 * 1024;

/// Stream allowance for the end-of-archive marker and record padding
/// (GNU tar pads archives to 10 KiB records).
const STREAM_TRAILER_BYTES: u64 = 64 * 1024;

/// Size of the copy buffer used for entry data.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// Safely unpacks `archive` into `dest`, returning the index of its files.
///
/// `dest` must not exist yet (its parent must) or be an empty directory;
/// callers unpack into a temporary directory and rename it into place. Only
/// regular files and directories with safe relative paths are accepted (a
/// leading `./` is allowed); every size limit is enforced while decompressing,
/// so a decompression bomb fails fast with bounded memory. Files are created
/// with `create_new` (mode 0o644, directories 0o755), hashed while written and
/// synced to disk before this returns. Whether the files the manifest names
/// are present is left to the caller (see [`Manifest::required_files`]).
///
/// # Errors
///
/// Returns the first problem found as a [`BundleError`]. On any error,
/// everything written under `dest` is removed again (and `dest` itself, if
/// this call created it).
pub fn unpack(archive: &[u8], dest: &Path, limits: &UnpackLimits) -> Result<FileIndex, BundleError> {
    let created = prepare_destination(dest)?;
    let result = read_archive(archive, limits, Some(dest)).map(|(index, _manifest)| index);
    if result.is_err() {
        remove_written(dest, created);
    }
    result
}

/// Validates `archive` exactly as [`unpack`] does, in memory, writing nothing.
///
/// Returns the file index and the parsed manifest (for `ext-runner inspect`).
///
/// # Errors
///
/// Returns the same errors as [`unpack`], except [`BundleError::Io`].
pub fn list(archive: &[u8], limits: &UnpackLimits) -> Result<(FileIndex, Manifest), BundleError> {
    read_archive(archive, limits, None)
}

/// Decompresses and walks `archive`, writing files under `dest` when given.
fn read_archive(
    archive: &[u8],
    limits: &UnpackLimits,
    dest: Option<&Path>,
) -> Result<(FileIndex, Manifest), BundleError> {
    if !archive.starts_with(&ZSTD_MAGIC) {
        return Err(BundleError::Decompress {
            reason: "does not start with a zstd frame".to_owned(),
        });
    }
    let decompress = |err: io::Error| BundleError::Decompress {
        reason: err.to_string(),
    };
    let mut decoder = zstd::stream::read::Decoder::with_buffer(archive).map_err(decompress)?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(decompress)?;

    let progress = Rc::new(Progress::default());
    let stream = CappedStream {
        inner: decoder,
        cap: stream_cap(limits),
        progress: Rc::clone(&progress),
        failure: None,
    };
    let mut tar = tar::Archive::new(stream);
    let mut walker = Walker::new(limits, dest);
    let walked = walker.walk(&mut tar, &progress);
    let mut stream = tar.into_inner();
    // When the stream itself failed, that is the real cause; the tar reader
    // only saw an I/O error.
    if let Some(failure) = stream.failure.take() {
        return Err(failure.into_error(limits));
    }
    walked?;
    progress.header_limit.set(u64::MAX);
    stream.expect_only_padding(limits)?;

    let bytes = walker.manifest.take().ok_or(BundleError::MissingManifest)?;
    let manifest = Manifest::from_slice(&bytes)?;
    walker.sync_directories()?;
    Ok((walker.files, manifest))
}

/// Cap on the whole decompressed tar stream: the content cap plus header
/// overhead for the most entries allowed.
fn stream_cap(limits: &UnpackLimits) -> u64 {
    limits
        .max_total_bytes
        .saturating_add(limits.max_files.saturating_mul(STREAM_BYTES_PER_ENTRY))
        .saturating_add(STREAM_TRAILER_BYTES)
}

/// Positions shared between the capped stream (owned by the tar reader) and
/// the walker that drives it.
#[derive(Debug)]
struct Progress {
    /// Decompressed bytes handed to the tar reader so far.
    read: Cell<u64>,
    /// Stream offset the tar reader may not pass while parsing headers.
    header_limit: Cell<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            read: Cell::new(0),
            header_limit: Cell::new(MAX_ENTRY_HEADER_BYTES),
        }
    }
}

/// Why the decompressed stream stopped.
#[derive(Debug)]
enum StreamFailure {
    /// More bytes than the stream cap.
    TooLarge,
    /// A frame declared a window above `MAX_WINDOW_LOG`.
    WindowTooLarge,
    /// One entry's headers exceeded `MAX_ENTRY_HEADER_BYTES`.
    HeadersTooLarge,
    /// Any other decoder error.
    Corrupt(String),
}

impl StreamFailure {
    fn into_error(self, limits: &UnpackLimits) -> BundleError {
        match self {
            Self::TooLarge => BundleError::TooLarge {
                limit: limits.max_total_bytes,
            },
            Self::WindowTooLarge => BundleError::TooLarge {
                limit: 1 << MAX_WINDOW_LOG,
            },
            Self::HeadersTooLarge => BundleError::Malformed {
                reason: format!("headers of one entry exceed {MAX_ENTRY_HEADER_BYTES} bytes"),
            },
            Self::Corrupt(reason) => BundleError::Decompress { reason },
        }
    }
}

/// The zstd decoder behind a byte counter: it stops at the stream cap (and,
/// while headers are parsed, at the header limit) without reading further,
/// and remembers why it stopped.
struct CappedStream<R> {
    inner: R,
    cap: u64,
    progress: Rc<Progress>,
    failure: Option<StreamFailure>,
}

impl<R: Read> CappedStream<R> {
    fn fail(&mut self, failure: StreamFailure) -> io::Error {
        let error = io::Error::other(format!("bundle stream stopped: {failure:?}"));
        self.failure = Some(failure);
        error
    }

    /// Reads what follows the tar end marker: only zero padding may remain.
    /// Reading to the end also makes zstd verify the frame checksum.
    fn expect_only_padding(&mut self, limits: &UnpackLimits) -> Result<(), BundleError> {
        let mut buffer = [0u8; 8 * 1024];
        loop {
            match self.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(n) if buffer[..n].iter().all(|byte| *byte == 0) => {}
                Ok(_) => {
                    return Err(BundleError::Malformed {
                        reason: "data after the end-of-archive marker".to_owned(),
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(match self.failure.take() {
                        Some(failure) => failure.into_error(limits),
                        None => BundleError::Decompress {
                            reason: err.to_string(),
                        },
                    });
                }
            }
        }
    }
}

impl<R: Read> Read for CappedStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("bundle stream already failed"));
        }
        let read = self.progress.read.get();
        let header_limit = self.progress.header_limit.get();
        let stop = self.cap.min(header_limit);
        // Ask for at most one byte past the stop: crossing it is detected
        // without decompressing anything further.
        let allowed = stop.saturating_sub(read).saturating_add(1);
        let want = usize::try_from(allowed).map_or(buf.len(), |allowed| allowed.min(buf.len()));
        match self.inner.read(&mut buf[..want]) {
            Ok(n) => {
                let total = read.saturating_add(n as u64);
                self.progress.read.set(total);
                if total > self.cap {
                    Err(self.fail(StreamFailure::TooLarge))
                } else if total > header_limit {
                    Err(self.fail(StreamFailure::HeadersTooLarge))
                } else {
                    Ok(n)
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Err(err),
            Err(err) => {
                // libzstd reports a window above `window_log_max` as
                // ZSTD_error_frameParameter_windowTooLarge, surfaced by the
                // zstd crate only as this message.
                let message = err.to_string();
                let failure = if message.contains("Frame requires too much memory") {
                    StreamFailure::WindowTooLarge
                } else {
                    StreamFailure::Corrupt(message)
                };
                Err(self.fail(failure))
            }
        }
    }
}

/// Validates entries one by one, tracking what the archive has declared so
/// far, and writes them under `dest` when unpacking.
struct Walker<'a> {
    limits: &'a UnpackLimits,
    dest: Option<&'a Path>,
    files: FileIndex,
    /// Every directory seen, explicit or implied by a file's path.
    dirs: BTreeSet<String>,
    entries: u64,
    total_bytes: u64,
    manifest: Option<Vec<u8>>,
    buffer: Vec<u8>,
}

impl<'a> Walker<'a> {
    fn new(limits: &'a UnpackLimits, dest: Option<&'a Path>) -> Self {
        Self {
            limits,
            dest,
            files: FileIndex::new(),
            dirs: BTreeSet::new(),
            entries: 0,
            total_bytes: 0,
            manifest: None,
            buffer: vec![0; COPY_BUFFER_BYTES],
        }
    }

    fn walk<R: Read>(&mut self, tar: &mut tar::Archive<R>, progress: &Progress) -> Result<(), BundleError> {
        let mut entries = tar.entries().map_err(malformed)?;
        loop {
            progress
                .header_limit
                .set(progress.read.get().saturating_add(MAX_ENTRY_HEADER_BYTES));
            let Some(entry) = entries.next() else {
                return Ok(());
            };
            let mut entry = entry.map_err(malformed)?;
            progress.header_limit.set(u64::MAX);
            self.entry(&mut entry)?;
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_files {
            return Err(BundleError::TooManyFiles {
                limit: self.limits.max_files,
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = display_path(&raw_path);
        let kind = entry.header().entry_type();
        if !kind.is_file() && !kind.is_dir() {
            return Err(invalid(shown, forbidden_kind(kind)));
        }
        let path = entry_path(&raw_path, kind.is_dir()).map_err(|reason| invalid(&shown, reason))?;
        let size = checked_size(entry, &shown)?;

        if kind.is_dir() {
            if size != 0 {
                return Err(invalid(shown, "directory entry carries data"));
            }
            // `None` is the archive root itself (`./`), as GNU tar writes it.
            return path.map_or(Ok(()), |path| self.directory(path));
        }
        match path {
            Some(path) => self.file(path, size, entry),
            None => Err(invalid(shown, "is empty")),
        }
    }

    fn directory(&mut self, path: String) -> Result<(), BundleError> {
        if self.files.contains_key(&path) {
            return Err(invalid(path, "is both a file and a directory"));
        }
        self.add_parents(&path)?;
        self.add_dir(path)
    }

    fn file<R: Read>(&mut self, path: String, size: u64, entry: &mut tar::Entry<'_, R>) -> Result<(), BundleError> {
        if self.files.contains_key(&path) {
            return Err(invalid(path, "duplicate path"));
        }
        if self.dirs.contains(&path) {
            return Err(invalid(path, "is both a directory and a file"));
        }
        let is_manifest = path == MANIFEST_FILE_NAME;
        let limit = if is_manifest {
            MAX_MANIFEST_BYTES.min(self.limits.max_file_bytes)
        } else {
            self.limits.max_file_bytes
        };
        if size > limit {
            return Err(BundleError::FileTooLarge { path, limit });
        }
        self.total_bytes = self.total_bytes.saturating_add(size);
        if self.total_bytes > self.limits.max_total_bytes {
            return Err(BundleError::TooLarge {
                limit: self.limits.max_total_bytes,
            });
        }
        self.add_parents(&path)?;

        let mut out = match self.dest {
            Some(dest) => {
                let target = dest.join(&path);
                Some((create_file(&target).map_err(io_error(&target))?, target))
            }
            None => None,
        };
        let mut manifest = is_manifest.then(Vec::new);
        let mut hasher = Hasher::new();
        let mut copied: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(BundleError::Malformed {
                        reason: format!("reading `{path}`: {err}"),
                    });
                }
            };
            let chunk = &self.buffer[..n];
            copied += n as u64;
            // The tar reader never yields more than the declared size; this
            // keeps the cap true even if that ever changed.
            if copied > limit {
                return Err(BundleError::FileTooLarge { path, limit });
            }
            hasher.update(chunk);
            if let Some((file, target)) = &mut out {
                file.write_all(chunk).map_err(io_error(target))?;
            }
            if let Some(manifest) = &mut manifest {
                manifest.extend_from_slice(chunk);
            }
        }
        if copied != size {
            return Err(BundleError::Malformed {
                reason: format!("archive ends inside `{path}`"),
            });
        }
        if let Some((file, target)) = out {
            file.sync_all().map_err(io_error(&target))?;
        }
        if manifest.is_some() {
            self.manifest = manifest;
        }
        self.files.insert(
            path,
            FileMeta {
                size,
                sha256: hasher.finish(),
            },
        );
        Ok(())
    }

    /// Registers (and creates) the directories above `path`, which must not
    /// be files.
    fn add_parents(&mut self, path: &str) -> Result<(), BundleError> {
        let parents = path.match_indices('/').map(|(at, _)| &path[..at]);
        for parent in parents {
            if self.files.contains_key(parent) {
                return Err(invalid(path, format!("is inside `{parent}`, which is a file")));
            }
            if !self.dirs.contains(parent) {
                self.add_dir(parent.to_owned())?;
            }
        }
        Ok(())
    }

    fn add_dir(&mut self, path: String) -> Result<(), BundleError> {
        if self.dirs.contains(&path) {
            // A repeated directory entry changes nothing.
            return Ok(());
        }
        if let Some(dest) = self.dest {
            let target = dest.join(&path);
            create_dir(&target).map_err(io_error(&target))?;
        }
        self.dirs.insert(path);
        Ok(())
    }

    /// Makes the new directory entries durable, so that a rename of `dest`
    /// after a crash never exposes a directory missing files.
    fn sync_directories(&self) -> Result<(), BundleError> {
        let Some(dest) = self.dest else {
            return Ok(());
        };
        let dirs = self.dirs.iter().map(|dir| dest.join(dir));
        for dir in dirs.chain(std::iter::once(dest.to_path_buf())) {
            sync_dir(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }
}

/// Normalises an entry's raw path: strips one leading `./` (and a trailing `/`
/// on directories), then requires a safe relative path. `None` is the root.
fn entry_path(raw: &[u8], is_dir: bool) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "is not valid UTF-8".to_owned())?;
    let text = text.strip_prefix("./").unwrap_or(text);
    let text = if is_dir {
        text.strip_suffix('/').unwrap_or(text)
    } else {
        text
    };
    if is_dir && (text.is_empty() || text == ".") {
        return Ok(None);
    }
    relpath::check(text).map_err(|problem| problem.to_string())?;
    Ok(Some(text.to_owned()))
}

/// The entry's size after checking that PAX extension records agree with the
/// tar header: several readers each trusting a different one is how archives
/// show different content to a validator and an extractor (RUSTSEC-2026-0068).
fn checked_size<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<u64, BundleError> {
    let header_size = entry.header().entry_size().map_err(malformed)?;
    if let Some(extensions) = entry.pax_extensions().map_err(malformed)? {
        let mut seen = BTreeSet::new();
        for extension in extensions {
            let extension = extension.map_err(|_| invalid(shown, "has a malformed PAX extension record"))?;
            let key = String::from_utf8_lossy(extension.key_bytes()).into_owned();
            if key.starts_with("GNU.sparse.") {
                return Err(invalid(shown, "sparse files are not allowed"));
            }
            if key == "size" {
                let value = std::str::from_utf8(extension.value_bytes())
                    .ok()
                    .and_then(|value| value.parse::<u64>().ok());
                if value != Some(header_size) {
                    let value = String::from_utf8_lossy(extension.value_bytes()).into_owned();
                    return Err(invalid(
                        shown,
                        format!("PAX size {value} disagrees with the header size {header_size}"),
                    ));
                }
            }
            if !seen.insert(key.clone()) {
                return Err(invalid(shown, format!("repeats PAX key `{key}`")));
            }
        }
    }
    if entry.size() != header_size {
        return Err(invalid(shown, "size disagrees with the header size"));
    }
    Ok(header_size)
}

fn forbidden_kind(kind: EntryType) -> String {
    let what = if kind.is_symlink() {
        "symbolic links"
    } else if kind.is_hard_link() {
        "hard links"
    } else if kind.is_character_special() || kind.is_block_special() {
        "device files"
    } else if kind.is_fifo() {
        "FIFOs"
    } else if kind.is_gnu_sparse() {
        "sparse files"
    } else if kind.is_pax_global_extensions() {
        "PAX global headers"
    } else {
        return format!(
            "entry type {:?} is not allowed; only files and directories are",
            char::from(kind.as_byte())
        );
    };
    format!("{what} are not allowed; only files and directories are")
}

/// A path for messages: as written when printable UTF-8, else with bytes escaped.
fn display_path(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => raw.escape_ascii().to_string(),
    }
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> BundleError {
    BundleError::InvalidEntry {
        path: path.into(),
        reason: reason.into(),
    }
}

fn malformed(err: io::Error) -> BundleError {
    BundleError::Malformed {
        reason: err.to_string(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dest` when missing (returning `true`), or accepts an existing
/// empty directory that is not a symlink.
fn prepare_destination(dest: &Path) -> Result<bool, BundleError> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let mut children = fs::read_dir(dest).map_err(io_error(dest))?;
            if children.next().is_some() {
                return Err(io_error(dest)(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "unpack destination is not empty",
                )));
            }
            Ok(false)
        }
        Ok(_) => Err(io_error(dest)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "unpack destination exists and is not a directory",
        ))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            create_dir(dest).map_err(io_error(dest))?;
            Ok(true)
        }
        Err(err) => Err(io_error(dest)(err)),
    }
}

/// Best-effort removal of a failed unpack: `dest` itself when this call
/// created it, else everything inside it. `remove_dir_all` does not follow
/// symlinks, and unpacking never creates any.
fn remove_written(dest: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dest);
        return;
    }
    let Ok(children) = fs::read_dir(dest) else {
        return;
    };
    for child in children.flatten() {
        let path = child.path();
        let _ = match child.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

/// Creates a new file with mode 0o644. `create_new` (O_EXCL) never follows a
/// symlink at the final component and never reuses an existing file; the
/// parent directories were all created by this unpack, which makes no links.
fn create_file(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o644);
        let file = options.open(path)?;
        // The umask may have removed bits; the mode is part of the contract.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

/// Creates one directory (not its parents) with mode 0o755.
fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o755);
        builder.create(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
    }
    #[cfg(not(unix))]
    builder.create(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(path)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for syncing here; file data is synced.
        let _ = path;
        Ok(())
    }
}
