use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::{EntryType, Header};

use super::*;
use crate::manifest::Manifest;

const MANIFEST: &str = r#"{
  "name": "com.example.sales",
  "version": "1.0.0",
  "capabilities": ["http.fetch"],
  "api": {"endpoints": [
    {"method": "GET", "path": "/items", "handler": "dist/main"},
    {"method": "POST", "path": "/sync", "handler": "dist/sync.wasm"}
  ]},
  "ui": {"type": "iframe", "entry": "index.html"}
}"#;

/// Files of the sample bundle directory, in the order they are created.
const BUNDLE_FILES: &[(&str, &[u8])] = &[
    ("manifest.json", MANIFEST.as_bytes()),
    ("dist/main.wasm", b"\0asm main component"),
    ("dist/sync.wasm", b"\0asm sync component"),
    ("ui/index.html", b"<!doctype html><title>sales</title>"),
    ("ui/assets/app.js", b"console.log('hi')"),
    ("precompiled/x86_64-unknown-linux-gnu.cwasm", b"ELF precompiled"),
    ("SIGNATURE", b"signature bytes"),
    ("sbom.spdx.json", b"{}"),
    // Not part of a bundle: must be left out.
    ("src/lib.rs", b"fn main() {}"),
    ("target/debug/junk", b"junk"),
    ("Cargo.toml", b"[package]"),
    (".env", b"SECRET=1"),
    ("ui/.DS_Store", b"finder junk"),
];

fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, content).expect("write");
    }
}

fn sample_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), BUNDLE_FILES);
    dir
}

fn packed_sample() -> Vec<u8> {
    pack_dir(sample_dir().path()).expect("pack")
}

/// Paths, types and metadata of every entry of a packed archive.
fn tar_listing(archive: &[u8]) -> Vec<(String, EntryType, u32, u64, u64, u64)> {
    let tar = zstd::decode_all(archive).expect("zstd");
    let mut reader = tar::Archive::new(tar.as_slice());
    reader
        .entries()
        .expect("entries")
        .map(|entry| {
            let entry = entry.expect("entry");
            let header = entry.header();
            assert!(header.as_ustar().is_some(), "ustar format");
            assert_eq!(header.username_bytes(), Some(&b""[..]));
            assert_eq!(header.groupname_bytes(), Some(&b""[..]));
            (
                String::from_utf8(entry.path_bytes().into_owned()).expect("utf8"),
                header.entry_type(),
                header.mode().expect("mode"),
                header.mtime().expect("mtime"),
                header.uid().expect("uid"),
                header.gid().expect("gid"),
            )
        })
        .collect()
}

#[test]
fn pack_includes_only_bundle_files_in_sorted_order() {
    let listing = tar_listing(&packed_sample());
    let paths: Vec<&str> = listing.iter().map(|entry| entry.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "SIGNATURE",
            "dist",
            "dist/main.wasm",
            "dist/sync.wasm",
            "manifest.json",
            "precompiled",
            "precompiled/x86_64-unknown-linux-gnu.cwasm",
            "sbom.spdx.json",
            "ui",
            "ui/assets",
            "ui/assets/app.js",
            "ui/index.html",
        ]
    );
    for (path, kind, mode, mtime, uid, gid) in listing {
        let want = if kind.is_dir() { 0o755 } else { 0o644 };
        assert!(kind.is_dir() || kind.is_file(), "{path}");
        assert_eq!((mode, mtime, uid, gid), (want, 0, 0, 0), "{path}");
    }
}

#[test]
fn pack_is_deterministic() {
    let first = sample_dir();
    let once = pack_dir(first.path()).expect("pack");
    let twice = pack_dir(first.path()).expect("pack again");
    assert_eq!(once, twice);

    // The same content created in reverse order, later, with other modes.
    let copy = tempfile::tempdir().expect("tempdir");
    let mut reversed = BUNDLE_FILES.to_vec();
    reversed.reverse();
    std::thread::sleep(Duration::from_millis(20));
    write_files(copy.path(), &reversed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let wasm = copy.path().join("dist/main.wasm");
        fs::set_permissions(&wasm, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(copy.path().join("ui"), fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    assert_eq!(pack_dir(copy.path()).expect("pack copy"), once);
    assert_eq!(Digest::of(&once), Digest::of(&twice));

    // Different content gives a different archive.
    fs::write(copy.path().join("ui/index.html"), "changed").expect("write");
    assert_ne!(pack_dir(copy.path()).expect("pack changed"), once);
}

#[test]
fn packed_frame_declares_content_size_checksum_and_a_small_window() {
    let archive = packed_sample();
    let tar_len = zstd::decode_all(archive.as_slice()).expect("zstd").len() as u64;
    let content_size = zstd::zstd_safe::get_frame_content_size(&archive).expect("frame");
    assert_eq!(content_size, Some(tar_len));
    // Frame header descriptor: bit 2 is the content checksum flag.
    assert_eq!(archive[4] & 0b100, 0b100, "checksum flag");
}

#[test]
fn pack_errors_name_the_field_and_path() {
    let cases: &[(&str, &str)] = &[
        (
            "dist/main.wasm",
            "manifest.json: field `entry`: `dist/main.wasm` is not a file in the bundle directory",
        ),
        (
            "dist/sync.wasm",
            "manifest.json: field `api.endpoints[1].handler`: `dist/sync.wasm` is not a file in the bundle directory",
        ),
    ];
    for (missing, message) in cases {
        let dir = sample_dir();
        fs::remove_file(dir.path().join(missing)).expect("remove");
        let err = pack_dir(dir.path()).expect_err(missing);
        assert_eq!(err.to_string(), *message);
        assert!(matches!(err, PackError::MissingFile { .. }), "{err:?}");
    }

    let dir = sample_dir();
    fs::write(dir.path().join("manifest.json"), r#"{"name": "x", "version": "1"}"#).expect("write");
    let err = pack_dir(dir.path()).expect_err("bad manifest");
    assert_eq!(
        err.to_string(),
        "manifest.json: field `name`: `x` is not a reverse-domain name like `com.example.app`: it needs at least two dot-separated segments\n\
         manifest.json: field `version`: `1` is not a semantic version like `1.2.3`: unexpected end of input while parsing major version number"
    );

    let dir = sample_dir();
    fs::remove_file(dir.path().join("manifest.json")).expect("remove");
    let err = pack_dir(dir.path()).expect_err("no manifest");
    assert_eq!(
        err.to_string(),
        format!("{}: no manifest.json in the bundle directory", dir.path().display())
    );
}

#[test]
fn pack_refuses_what_unpack_would_refuse() {
    let dir = sample_dir();
    let padded = MANIFEST.replacen('{', &format!("{{\"pad\": \"{}\",", " ".repeat(2 << 20)), 1);
    fs::write(dir.path().join("manifest.json"), &padded).expect("write");
    let err = pack_dir(dir.path()).expect_err("big manifest");
    assert_eq!(
        err.to_string(),
        format!(
            "manifest.json: {} bytes is more than the 1048576 bytes a bundle file may have",
            padded.len()
        )
    );
}

#[cfg(unix)]
#[test]
fn pack_rejects_symlinks_and_unsafe_names() {
    let dir = sample_dir();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("ui/passwd")).expect("symlink");
    let err = pack_dir(dir.path()).expect_err("symlink");
    assert_eq!(
        err.to_string(),
        "ui/passwd: symbolic links and special files cannot be packed"
    );

    let dir = sample_dir();
    fs::write(dir.path().join("ui/a\\b.js"), "x").expect("write");
    let err = pack_dir(dir.path()).expect_err("backslash");
    assert_eq!(err.to_string(), "ui/a\\b.js: path contains a backslash");
}

#[test]
fn unpack_round_trip_with_file_index() {
    let archive = packed_sample();
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("out");
    let index = unpack(&archive, &dest, &UnpackLimits::default()).expect("unpack");

    let expected: Vec<&(&str, &[u8])> = BUNDLE_FILES[..8].iter().collect();
    assert_eq!(index.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut paths: Vec<&str> = expected.iter().map(|(path, _)| *path).collect();
        paths.sort_unstable();
        paths
    });
    for (path, content) in expected {
        let meta = &index[*path];
        assert_eq!(meta.size, content.len() as u64, "{path}");
        assert_eq!(meta.sha256, Digest::of(content), "{path}");
        assert_eq!(fs::read(dest.join(path)).expect("read"), *content, "{path}");
    }
    assert!(!dest.join("src").exists());
    assert!(!dest.join(".env").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &str| fs::metadata(dest.join(path)).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode("dist/main.wasm"), 0o644);
        assert_eq!(mode("ui/assets"), 0o755);
    }

    // `list` validates the same archive in memory and writes nothing.
    let (listed, manifest) = list(&archive, &UnpackLimits::default()).expect("list");
    assert_eq!(listed, index);
    assert_eq!(manifest.name, "com.example.sales");
    assert_eq!(manifest, Manifest::from_slice(MANIFEST.as_bytes()).expect("manifest"));
}

#[test]
fn unpack_into_existing_empty_dir_but_not_a_non_empty_one() {
    let archive = packed_sample();
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    unpack(&archive, &dest, &UnpackLimits::default()).expect("empty dest");

    let err = unpack(&archive, &dest, &UnpackLimits::default()).expect_err("non-empty");
    assert_eq!(err.code(), "bundle_io");
    assert!(err.to_string().ends_with("unpack destination is not empty"), "{err}");
    // What was there is untouched.
    assert!(dest.join("manifest.json").is_file());
}

#[test]
fn long_paths_round_trip_through_pax() {
    let dir = sample_dir();
    let deep = format!("ui/{}/{}.js", "d".repeat(200), "f".repeat(150));
    write_files(dir.path(), &[(&deep, b"deep")]);
    let archive = pack_dir(dir.path()).expect("pack");
    let (index, _) = list(&archive, &UnpackLimits::default()).expect("list");
    assert_eq!(index[&deep].sha256, Digest::of(b"deep"));
}

/// Builds raw tar streams, including entries `tar::Builder` refuses to write.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    /// A bundle that is valid so far: a manifest, a directory and a file.
    fn valid_start() -> Self {
        Self::default()
            .file(b"manifest.json", MINIMAL_MANIFEST.as_bytes())
            .dir(b"dist/")
            .file(b"dist/main.wasm", b"wasm")
    }

    fn header(name: &[u8], kind: EntryType, size: u64) -> Header {
        let mut header = Header::new_ustar();
        // Write the name bytes directly: `set_path` refuses `..` and absolute paths.
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header
    }

    fn push(mut self, mut header: Header, data: &[u8]) -> Self {
        header.set_cksum();
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        let padding = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, padding));
        self
    }

    fn file(self, name: &[u8], data: &[u8]) -> Self {
        self.push(Self::header(name, EntryType::Regular, data.len() as u64), data)
    }

    fn dir(self, name: &[u8]) -> Self {
        self.push(Self::header(name, EntryType::Directory, 0), &[])
    }

    fn link(self, name: &[u8], kind: EntryType, target: &[u8]) -> Self {
        let mut header = Self::header(name, kind, 0);
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        self.push(header, &[])
    }

    fn device(self, name: &[u8], kind: EntryType) -> Self {
        let mut header = Self::header(name, kind, 0);
        header.set_device_major(1).expect("major");
        header.set_device_minor(3).expect("minor");
        self.push(header, &[])
    }

    /// A PAX extension header ('x') describing the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.push(Self::header(b"PaxHeader", EntryType::XHeader, data.len() as u64), &data)
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend([0u8; 1024]);
        self.0
    }

    fn zst(self) -> Vec<u8> {
        zstd::encode_all(self.finish().as_slice(), 3).expect("zstd")
    }
}

const MINIMAL_MANIFEST: &str = r#"{"name": "com.example.x", "version": "0.1.0"}"#;

/// A temporary root holding the unpack destination and, next to it, a
/// sentinel directory that must stay empty whatever the archive says.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("sentinel")).expect("sentinel");
        Self { root }
    }

    fn dest(&self) -> PathBuf {
        self.root.path().join("out")
    }

    fn sentinel(&self) -> PathBuf {
        self.root.path().join("sentinel")
    }

    /// Nothing was created outside `dest`, and `dest` is gone.
    fn assert_clean(&self, case: &str) {
        let sentinel: Vec<_> = fs::read_dir(self.sentinel()).expect("read").collect();
        assert!(sentinel.is_empty(), "{case}: sentinel touched: {sentinel:?}");
        let mut names: Vec<String> = fs::read_dir(self.root.path())
            .expect("read")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sentinel"], "{case}: root contents");
    }
}

/// B-04: tar slip, links, devices, duplicates and path tricks are rejected
/// with `bundle_invalid_entry`, and nothing is created outside the
/// destination (checked with a sentinel directory next to it).
#[test]
fn b04_malicious_entries_are_rejected_and_leave_nothing_behind() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.sentinel();
    let absolute = format!("{}/pwned", sentinel.display());
    let absolute_link = sentinel.display().to_string();

    let cases: Vec<(&str, RawTar, &str)> = vec![
        (
            "parent escape",
            RawTar::valid_start().file(b"../sentinel/pwned", b"x"),
            "invalid bundle entry `../sentinel/pwned`: contains a `..` segment",
        ),
        (
            "absolute path into the sentinel",
            RawTar::valid_start().file(absolute.as_bytes(), b"x"),
            "is absolute",
        ),
        (
            "absolute /etc path",
            RawTar::valid_start().file(b"/etc/ext-bundle-b04", b"x"),
            "invalid bundle entry `/etc/ext-bundle-b04`: is absolute",
        ),
        (
            "dot-slash escape",
            RawTar::valid_start().file(b"./a/../../sentinel/pwned", b"x"),
            "invalid bundle entry `./a/../../sentinel/pwned`: contains a `..` segment",
        ),
        (
            "symlink then same-name directory (RUSTSEC-2026-0067)",
            RawTar::valid_start()
                .link(b"a", EntryType::Symlink, b"../sentinel")
                .dir(b"a/")
                .file(b"a/pwned", b"x"),
            "invalid bundle entry `a`: symbolic links are not allowed; only files and directories are",
        ),
        (
            "absolute symlink",
            RawTar::valid_start()
                .link(b"dist/link", EntryType::Symlink, absolute_link.as_bytes())
                .file(b"dist/link/pwned", b"x"),
            "invalid bundle entry `dist/link`: symbolic links are not allowed; only files and directories are",
        ),
        (
            "hardlink",
            RawTar::valid_start().link(b"h", EntryType::Link, b"../sentinel/pwned"),
            "invalid bundle entry `h`: hard links are not allowed; only files and directories are",
        ),
        (
            "character device",
            RawTar::valid_start().device(b"dev/null", EntryType::Char),
            "invalid bundle entry `dev/null`: device files are not allowed; only files and directories are",
        ),
        (
            "block device",
            RawTar::valid_start().device(b"sda", EntryType::Block),
            "invalid bundle entry `sda`: device files are not allowed; only files and directories are",
        ),
        (
            "fifo",
            RawTar::valid_start().device(b"pipe", EntryType::Fifo),
            "invalid bundle entry `pipe`: FIFOs are not allowed; only files and directories are",
        ),
        (
            "duplicate file",
            RawTar::valid_start().file(b"dist/main.wasm", b"other"),
            "invalid bundle entry `dist/main.wasm`: duplicate path",
        ),
        (
            "duplicate after ./ normalisation",
            RawTar::valid_start().file(b"./manifest.json", b"{}"),
            "invalid bundle entry `manifest.json`: duplicate path",
        ),
        (
            "file then directory of the same name",
            RawTar::valid_start().dir(b"dist/main.wasm/"),
            "invalid bundle entry `dist/main.wasm`: is both a file and a directory",
        ),
        (
            "file used as a parent",
            RawTar::valid_start().file(b"dist/main.wasm/x", b"x"),
            "invalid bundle entry `dist/main.wasm/x`: is inside `dist/main.wasm`, which is a file",
        ),
        (
            "directory then file of the same name",
            RawTar::valid_start().file(b"dist", b"x"),
            "invalid bundle entry `dist`: is both a directory and a file",
        ),
        (
            "backslash",
            RawTar::valid_start().file(b"..\\sentinel\\pwned", b"x"),
            "invalid bundle entry `..\\sentinel\\pwned`: contains a backslash",
        ),
        (
            "NUL in a PAX path",
            RawTar::valid_start()
                .pax(&[("path", b"ui/a\0../../sentinel/pwned")])
                .file(b"ui/a", b"x"),
            "invalid bundle entry `ui/a\\x00../../sentinel/pwned`: contains a NUL byte",
        ),
        (
            "escape in a PAX path",
            RawTar::valid_start()
                .pax(&[("path", b"../sentinel/pwned")])
                .file(b"innocent", b"x"),
            "invalid bundle entry `../sentinel/pwned`: contains a `..` segment",
        ),
        (
            "PAX size desync (RUSTSEC-2026-0068)",
            RawTar::valid_start()
                .pax(&[("size", b"0")])
                .file(b"ui/hidden.tar", b"an embedded entry a lenient reader would see"),
            "invalid bundle entry `ui/hidden.tar`: PAX size 0 disagrees with the header size 44",
        ),
        (
            "repeated PAX key",
            RawTar::valid_start()
                .pax(&[("path", b"ui/a"), ("path", b"../sentinel/pwned")])
                .file(b"ui/a", b"x"),
            "invalid bundle entry `ui/a`: repeats PAX key `path`",
        ),
        (
            "PAX sparse file",
            RawTar::valid_start()
                .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
                .file(b"ui/sparse", b"x"),
            "invalid bundle entry `ui/sparse`: sparse files are not allowed",
        ),
        (
            "empty segment",
            RawTar::valid_start().file(b"ui//x", b"x"),
            "invalid bundle entry `ui//x`: contains an empty segment",
        ),
        (
            "dot segment",
            RawTar::valid_start().file(b"ui/./x", b"x"),
            "invalid bundle entry `ui/./x`: contains a `.` segment",
        ),
        (
            "not UTF-8",
            RawTar::valid_start().file(b"ui/\xff.js", b"x"),
            "invalid bundle entry `ui/\\xff.js`: is not valid UTF-8",
        ),
        (
            "directory with data",
            RawTar::valid_start().push(RawTar::header(b"ui/", EntryType::Directory, 3), b"abc"),
            "invalid bundle entry `ui/`: directory entry carries data",
        ),
    ];

    for (case, tar, message) in cases {
        let archive = tar.zst();
        let err = unpack(&archive, &sandbox.dest(), &UnpackLimits::default()).expect_err(case);
        assert!(matches!(err, BundleError::InvalidEntry { .. }), "{case}: {err:?}");
        assert_eq!(err.code(), "bundle_invalid_entry", "{case}");
        assert!(
            err.to_string().ends_with(message),
            "{case}: got `{err}`, want `{message}`"
        );
        sandbox.assert_clean(case);
        assert!(!Path::new("/etc/ext-bundle-b04").exists());

        // `list` rejects exactly the same archives.
        let listed = list(&archive, &UnpackLimits::default()).expect_err(case);
        assert_eq!(listed.to_string(), err.to_string(), "{case}");
    }
}

/// B-04: a failed unpack into a pre-existing empty directory empties it again.
#[test]
fn b04_failed_unpack_into_existing_dir_removes_what_it_wrote() {
    let sandbox = Sandbox::new();
    let dest = sandbox.dest();
    fs::create_dir(&dest).expect("mkdir");
    let archive = RawTar::valid_start()
        .dir(b"ui/")
        .file(b"ui/index.html", b"<html>")
        .link(b"ui/evil", EntryType::Symlink, b"/etc/passwd")
        .zst();
    let err = unpack(&archive, &dest, &UnpackLimits::default()).expect_err("symlink");
    assert_eq!(err.code(), "bundle_invalid_entry");
    assert!(dest.is_dir(), "the caller's directory stays");
    assert_eq!(fs::read_dir(&dest).expect("read").count(), 0, "but is empty");
    assert_eq!(fs::read_dir(sandbox.sentinel()).expect("read").count(), 0);
}

#[test]
fn gnu_tar_style_entries_are_accepted() {
    // `tar -C dir -cf - .` writes a `./` root entry and `./`-prefixed paths.
    let archive = RawTar::default()
        .dir(b"./")
        .file(b"./manifest.json", MINIMAL_MANIFEST.as_bytes())
        .dir(b"./dist/")
        .file(b"./dist/main.wasm", b"wasm")
        .dir(b"./dist/")
        .zst();
    let sandbox = Sandbox::new();
    let index = unpack(&archive, &sandbox.dest(), &UnpackLimits::default()).expect("unpack");
    assert_eq!(
        index.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dist/main.wasm", "manifest.json"]
    );
    assert_eq!(fs::read(sandbox.dest().join("dist/main.wasm")).expect("read"), b"wasm");
}

#[test]
fn manifest_must_exist_and_parse() {
    let sandbox = Sandbox::new();
    let missing = RawTar::default().file(b"dist/main.wasm", b"wasm").zst();
    let err = unpack(&missing, &sandbox.dest(), &UnpackLimits::default()).expect_err("missing");
    assert!(matches!(err, BundleError::MissingManifest), "{err:?}");
    assert_eq!(err.code(), "bundle_invalid_manifest");
    assert_eq!(err.to_string(), "bundle has no manifest.json at its root");
    sandbox.assert_clean("missing manifest");

    let nested = RawTar::default()
        .file(b"dist/manifest.json", MINIMAL_MANIFEST.as_bytes())
        .zst();
    let err = list(&nested, &UnpackLimits::default()).expect_err("nested");
    assert!(matches!(err, BundleError::MissingManifest), "{err:?}");

    let invalid = RawTar::default().file(b"manifest.json", br#"{"name": "x"}"#).zst();
    let err = unpack(&invalid, &sandbox.dest(), &UnpackLimits::default()).expect_err("invalid");
    assert_eq!(err.code(), "bundle_invalid_manifest");
    assert_eq!(
        err.to_string(),
        "manifest.json: field `name`: `x` is not a reverse-domain name like `com.example.app`: it needs at least two dot-separated segments"
    );
    sandbox.assert_clean("invalid manifest");
}

#[test]
fn entry_count_and_size_limits() {
    let limits = UnpackLimits {
        max_total_bytes: 1000,
        max_files: 4,
        max_file_bytes: 600,
    };
    let sandbox = Sandbox::new();
    let cases: Vec<(&str, RawTar, &str)> = vec![
        (
            "too many entries",
            RawTar::valid_start().file(b"a", b"1").file(b"b", b"2"),
            "bundle has more than 4 entries",
        ),
        (
            "file too large",
            RawTar::default().file(b"big", &[7; 601]),
            "bundle file `big` is larger than 600 bytes",
        ),
        (
            "total too large",
            RawTar::default().file(b"a", &[1; 600]).file(b"b", &[2; 401]),
            "bundle is too large: decompressing it needs more than 1000 bytes",
        ),
    ];
    for (case, tar, message) in cases {
        let archive = tar.zst();
        let err = unpack(&archive, &sandbox.dest(), &limits).expect_err(case);
        assert_eq!(err.code(), "bundle_too_large", "{case}");
        assert_eq!(err.to_string(), message, "{case}");
        sandbox.assert_clean(case);
    }

    let big_manifest = format!("{{\"pad\": \"{}\"}}", " ".repeat(2 << 20));
    let archive = RawTar::default().file(b"manifest.json", big_manifest.as_bytes()).zst();
    let err = list(&archive, &UnpackLimits::default()).expect_err("manifest cap");
    assert_eq!(
        err.to_string(),
        "bundle file `manifest.json` is larger than 1048576 bytes"
    );
}

#[test]
fn corrupt_archives_are_rejected() {
    let valid = packed_sample();
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() / 2);
    let mut flipped = valid.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let header_checksum = {
        let mut tar = RawTar::valid_start().finish();
        tar[1024 + 5] ^= 0x01; // inside the second header's name
        zstd::encode_all(tar.as_slice(), 3).expect("zstd")
    };
    let trailing = {
        let mut tar = RawTar::valid_start().finish();
        tar.extend(RawTar::default().file(b"smuggled", b"x").finish());
        zstd::encode_all(tar.as_slice(), 3).expect("zstd")
    };
    let plain_tar = RawTar::valid_start().finish();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not zstd",
            plain_tar,
            "bundle is not a valid zstd stream: does not start with a zstd frame",
        ),
        (
            "empty",
            Vec::new(),
            "bundle is not a valid zstd stream: does not start with a zstd frame",
        ),
        ("truncated", truncated, "bundle is not a valid "),
        ("flipped byte", flipped, "bundle is not a valid "),
        (
            "header checksum",
            header_checksum,
            "bundle is not a valid tar archive: ",
        ),
        (
            "data after the end marker",
            trailing,
            "bundle is not a valid tar archive: data after the end-of-archive marker",
        ),
    ];
    let sandbox = Sandbox::new();
    for (case, archive, prefix) in cases {
        let err = unpack(&archive, &sandbox.dest(), &UnpackLimits::default()).expect_err(case);
        assert_eq!(err.code(), "bundle_corrupt", "{case}: {err}");
        assert!(err.to_string().starts_with(prefix), "{case}: {err}");
        sandbox.assert_clean(case);
    }
}

/// A zstd frame with the given window log whose blocks are stored raw.
fn raw_frame(window_log: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
    frame.push(0x00); // no content size, not single-segment, no checksum, no dictionary
    frame.push((window_log - 10) << 3); // window descriptor: exponent only
    let blocks: Vec<&[u8]> = payload.chunks(128 * 1024).collect();
    for (index, block) in blocks.iter().enumerate() {
        let last = u32::from(index + 1 == blocks.len());
        let header = (u32::try_from(block.len()).expect("block") << 3) | last; // type 0: raw
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(block);
    }
    frame
}

/// B-05: a frame declaring a window above 2^27 fails before any allocation;
/// 2^27 itself is accepted.
#[test]
fn b05_window_above_limit_is_refused() {
    let tar = RawTar::valid_start().finish();
    let accepted = raw_frame(27, &tar);
    let (index, _) = list(&accepted, &UnpackLimits::default()).expect("window 2^27");
    assert!(index.contains_key("dist/main.wasm"));

    let sandbox = Sandbox::new();
    for window_log in [28u8, 31, 41] {
        let archive = raw_frame(window_log, &tar);
        let err = unpack(&archive, &sandbox.dest(), &UnpackLimits::default()).expect_err("window too large");
        assert!(
            matches!(err, BundleError::TooLarge { limit } if limit == 1 << 27),
            "window 2^{window_log}: {err:?}"
        );
        assert_eq!(err.code(), "bundle_too_large");
        sandbox.assert_clean("window");
    }
}

/// Peak resident memory of this process, where the platform reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// B-05: 2 GiB of zeros compress to a few hundred KiB; unpacking stops at the
/// byte cap quickly, with bounded memory, and leaves nothing behind.
#[test]
fn b05_zstd_bomb_stops_at_the_byte_cap() {
    const BOMB_BYTES: u64 = 2 << 30;
    let mut bomb = Vec::new();
    zstd::stream::copy_encode(io::repeat(0).take(BOMB_BYTES), &mut bomb, 1).expect("encode");
    assert!(bomb.len() < 1 << 20, "compressed bomb is {} bytes", bomb.len());

    let limits = UnpackLimits {
        max_total_bytes: 1 << 20,
        ..UnpackLimits::default()
    };
    let sandbox = Sandbox::new();
    let started = Instant::now();
    let err = unpack(&bomb, &sandbox.dest(), &limits).expect_err("bomb");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, BundleError::TooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert_eq!(err.code(), "bundle_too_large");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    sandbox.assert_clean("bomb");
    if let Some(peak) = peak_rss_bytes() {
        // Holding the decompressed bomb would need 2 GiB.
        assert!(peak < 1 << 30, "peak RSS {peak} bytes");
    }
}

/// B-05: a header claiming a huge file is refused from its declared size,
/// before any of its data is decompressed.
#[test]
fn b05_declared_huge_file_is_refused_before_reading() {
    let mut tar = RawTar::default()
        .push(RawTar::header(b"ui/huge", EntryType::Regular, 10 << 30), &[])
        .0;
    tar.extend(std::iter::repeat_n(0u8, 4096));
    let archive = zstd::encode_all(tar.as_slice(), 3).expect("zstd");
    let err = list(&archive, &UnpackLimits::default()).expect_err("huge");
    assert!(
        matches!(&err, BundleError::FileTooLarge { path, limit } if path == "ui/huge" && *limit == DEFAULT_MAX_FILE_BYTES),
        "{err:?}"
    );
}

/// B-05: an oversized PAX extension header (which the tar reader would hold in
/// memory) is cut off at the per-entry header limit.
#[test]
fn b05_huge_extension_header_is_cut_off() {
    let header = RawTar::default()
        .push(RawTar::header(b"PaxHeader", EntryType::XHeader, 256 << 20), &[])
        .0;
    let mut archive = Vec::new();
    let mut encoder = zstd::stream::write::Encoder::new(&mut archive, 1).expect("encoder");
    io::Write::write_all(&mut encoder, &header).expect("write");
    io::copy(&mut io::repeat(b'a').take(256 << 20), &mut encoder).expect("copy");
    encoder.finish().expect("finish");

    let started = Instant::now();
    let err = list(&archive, &UnpackLimits::default()).expect_err("pax bomb");
    assert_eq!(err.code(), "bundle_corrupt", "{err}");
    assert_eq!(
        err.to_string(),
        "bundle is not a valid tar archive: headers of one entry exceed 65536 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// B-05: a frame whose declared content size is smaller than what its blocks
/// produce fails instead of producing the extra data.
#[test]
fn b05_lying_content_size_is_refused() {
    // Single-segment frame declaring 16 bytes of content, then 2 GiB of zero
    // RLE blocks (each 128 KiB from one byte).
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x20, 16];
    let blocks = 16 * 1024;
    for index in 0..blocks {
        let last = u32::from(index + 1 == blocks);
        let header = ((128 * 1024) << 3) | (1 << 1) | last; // type 1: RLE
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    let started = Instant::now();
    let err = list(&frame, &UnpackLimits::default()).expect_err("lying size");
    assert!(matches!(err.code(), "bundle_corrupt" | "bundle_too_large"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn error_codes() {
    let io = || io::Error::other("disk");
    let cases: Vec<(BundleError, &str)> = vec![
        (BundleError::Decompress { reason: String::new() }, "bundle_corrupt"),
        (BundleError::Malformed { reason: String::new() }, "bundle_corrupt"),
        (BundleError::TooLarge { limit: 1 }, "bundle_too_large"),
        (BundleError::TooManyFiles { limit: 1 }, "bundle_too_large"),
        (
            BundleError::FileTooLarge {
                path: String::new(),
                limit: 1,
            },
            "bundle_too_large",
        ),
        (
            BundleError::InvalidEntry {
                path: String::new(),
                reason: String::new(),
            },
            "bundle_invalid_entry",
        ),
        (BundleError::MissingManifest, "bundle_invalid_manifest"),
        (
            BundleError::Manifest(ManifestError::new("name", "is required")),
            "bundle_invalid_manifest",
        ),
        (
            BundleError::Io {
                path: String::new(),
                source: io(),
            },
            "bundle_io",
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code, "{err:?}");
    }
}

#[test]
fn default_limits() {
    let limits = UnpackLimits::default();
    assert_eq!(limits.max_total_bytes, 512 << 20);
    assert_eq!(limits.max_files, 20_000);
    assert_eq!(limits.max_file_bytes, 128 << 20);
    assert_eq!(BUNDLE_FILE_NAME, "bundle.tar.zst");
}
