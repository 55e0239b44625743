//! SHA-256 content digests, written `sha256:<64 lowercase hex>`.
//!
//! A bundle's content hash is the digest of its compressed archive bytes; the
//! same type names every file inside an unpacked bundle.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// The only algorithm this crate produces or accepts.
const ALGORITHM: &str = "sha256";

/// Length of a SHA-256 digest in hex characters.
const HEX_LEN: usize = 64;

/// A SHA-256 digest.
///
/// Displays (and serialises) as `sha256:<64 lowercase hex>`; parses from that
/// form or from the bare hex, in either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The input was empty.
    #[error("digest is empty; expected `sha256:<64 hex characters>`")]
    Empty,
    /// The part before `:` named another algorithm.
    #[error("unsupported digest algorithm `{algorithm}`; only `sha256` is accepted")]
    UnsupportedAlgorithm {
        /// The algorithm as written.
        algorithm: String,
    },
    /// A character of the hex part is not a hex digit.
    #[error("digest has a non-hex character {character:?} at position {position} of the hex part")]
    InvalidHex {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from the start of the hex part.
        position: usize,
    },
    /// The hex part has the wrong number of characters.
    #[error("digest must have 64 hex characters, found {length}")]
    WrongLength {
        /// How many characters the hex part has.
        length: usize,
    },
}

impl Digest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses `sha256:<64 hex>` or a bare `<64 hex>`; hex and the algorithm
    /// name are case-insensitive.
    ///
    /// # Errors
    ///
    /// Returns a [`DigestError`] naming what is wrong: an empty input, another
    /// algorithm, a non-hex character (with its position) or a wrong length.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        if s.is_empty() {
            return Err(DigestError::Empty);
        }
        let hex_part = match s.split_once(':') {
            Some((algorithm, rest)) if algorithm.eq_ignore_ascii_case(ALGORITHM) => rest,
            Some((algorithm, _)) => {
                return Err(DigestError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_owned(),
                });
            }
            None => s,
        };
        // Report a bad character before a bad length: it is the more specific
        // hint (a stray space or quote usually also changes the length).
        if let Some((position, character)) = hex_part.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(DigestError::InvalidHex { character, position });
        }
        if hex_part.len() != HEX_LEN {
            return Err(DigestError::WrongLength { length: hex_part.len() });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| DigestError::WrongLength { length: hex_part.len() })?;
        Ok(Self(bytes))
    }

    /// Computes the SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// The digest as 64 lowercase hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256, for hashing data that arrives in pieces.
///
/// Also implements [`io::Write`], so it can sit at the end of `io::copy`.
#[derive(Clone, Default)]
pub struct Hasher(sha2::Sha256);

impl Hasher {
    /// Starts an empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Finishes and returns the digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the empty string.
    const EMPTY_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        let upper = EMPTY_HEX.to_ascii_uppercase();
        let prefixed = format!("sha256:{EMPTY_HEX}");
        let prefixed_upper = format!("SHA256:{upper}");
        let ok: &[&str] = &[EMPTY_HEX, &upper, &prefixed, &prefixed_upper];
        for input in ok {
            let digest = Digest::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(digest, Digest::of(b""), "{input}");
        }

        let short = &EMPTY_HEX[..63];
        let long = format!("{EMPTY_HEX}0");
        let with_space = format!(" {EMPTY_HEX}");
        let sha512 = format!("sha512:{EMPTY_HEX}");
        let bad_char = format!("sha256:{}g", &EMPTY_HEX[..63]);
        let empty_hex = "sha256:".to_owned();
        let double_prefix = format!("sha256:sha256:{EMPTY_HEX}");
        let cases: &[(&str, &str)] = &[
            ("", "digest is empty; expected `sha256:<64 hex characters>`"),
            (short, "digest must have 64 hex characters, found 63"),
            (&long, "digest must have 64 hex characters, found 65"),
            (&empty_hex, "digest must have 64 hex characters, found 0"),
            (
                &with_space,
                "digest has a non-hex character ' ' at position 0 of the hex part",
            ),
            (
                &bad_char,
                "digest has a non-hex character 'g' at position 63 of the hex part",
            ),
            (
                &double_prefix,
                "digest has a non-hex character 's' at position 0 of the hex part",
            ),
            (
                &sha512,
                "unsupported digest algorithm `sha512`; only `sha256` is accepted",
            ),
            ("é", "digest has a non-hex character 'é' at position 0 of the hex part"),
        ];
        for (input, message) in cases {
            let err = Digest::parse(input).expect_err(input);
            assert_eq!(err.to_string(), *message, "input {input:?}");
        }
    }

    #[test]
    fn display_debug_hex_and_serde_agree() {
        let digest = Digest::of(b"");
        let text = format!("sha256:{EMPTY_HEX}");
        assert_eq!(digest.to_string(), text);
        assert_eq!(format!("{digest:?}"), text);
        assert_eq!(digest.hex(), EMPTY_HEX);
        assert_eq!(digest.as_bytes()[0], 0xe3);
        assert_eq!(text.parse::<Digest>(), Ok(digest));

        let json = serde_json::to_string(&digest).expect("serialise");
        assert_eq!(json, format!("\"{text}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, digest);
        let bare: Digest = serde_json::from_str(&format!("\"{EMPTY_HEX}\"")).expect("bare");
        assert_eq!(bare, digest);
        let err = serde_json::from_str::<Digest>("\"sha256:00\"").expect_err("short");
        assert!(err.to_string().contains("found 2"), "{err}");
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut hasher = Hasher::new();
        hasher.update(b"hello ");
        io::Write::write_all(&mut hasher, b"world").expect("write");
        assert_eq!(hasher.finish(), Digest::of(b"hello world"));
    }
}
