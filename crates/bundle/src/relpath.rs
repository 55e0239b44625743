//! The one definition of a safe path inside a bundle, shared by the manifest
//! checks, the packer and the unpacker so that all three agree.

use std::fmt;

/// Longest single path segment; the limit of common Linux file systems, so a
/// path that passes here can also be created on disk.
pub(crate) const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path is not a safe relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathProblem {
    Empty,
    Absolute,
    DrivePrefix,
    Backslash,
    Nul,
    EmptySegment,
    CurrentDir,
    ParentDir,
    SegmentTooLong,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "is empty",
            Self::Absolute => "is absolute",
            Self::DrivePrefix => "starts with a drive prefix",
            Self::Backslash => "contains a backslash",
            Self::Nul => "contains a NUL byte",
            Self::EmptySegment => "contains an empty segment",
            Self::CurrentDir => "contains a `.` segment",
            Self::ParentDir => "contains a `..` segment",
            Self::SegmentTooLong => "has a segment longer than 255 bytes",
        })
    }
}

/// Strips one leading `./`, then checks that what remains is a relative path
/// made only of normal `/`-separated segments.
///
/// Returns the path without the `./`.
pub(crate) fn normalise(path: &str) -> Result<&str, PathProblem> {
    let path = path.strip_prefix("./").unwrap_or(path);
    check(path)?;
    Ok(path)
}

/// Checks that `path` is relative and made only of normal segments: no `..`,
/// no `.`, no empty segment, no backslash, no NUL, no drive prefix.
pub(crate) fn check(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathProblem::DrivePrefix);
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathProblem::EmptySegment),
            "." => return Err(PathProblem::CurrentDir),
            ".." => return Err(PathProblem::ParentDir),
            s if s.len() > MAX_SEGMENT_BYTES => return Err(PathProblem::SegmentTooLong),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_table() {
        let long = "a".repeat(256);
        let cases: &[(&str, Result<&str, PathProblem>)] = &[
            ("dist/main.wasm", Ok("dist/main.wasm")),
            ("./dist/main.wasm", Ok("dist/main.wasm")),
            ("ui/assets/app.3f2a.js", Ok("ui/assets/app.3f2a.js")),
            ("a..b/c.", Ok("a..b/c.")),
            ("", Err(PathProblem::Empty)),
            ("./", Err(PathProblem::Empty)),
            ("././a", Err(PathProblem::CurrentDir)),
            ("/etc/passwd", Err(PathProblem::Absolute)),
            ("../x", Err(PathProblem::ParentDir)),
            ("./a/../../x", Err(PathProblem::ParentDir)),
            ("a/./b", Err(PathProblem::CurrentDir)),
            ("a//b", Err(PathProblem::EmptySegment)),
            ("a/", Err(PathProblem::EmptySegment)),
            ("a\\b", Err(PathProblem::Backslash)),
            ("a\0b", Err(PathProblem::Nul)),
            ("C:/x", Err(PathProblem::DrivePrefix)),
            ("c:x", Err(PathProblem::DrivePrefix)),
            (&long, Err(PathProblem::SegmentTooLong)),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise(input), *expected, "{input:?}");
        }
    }
}
