//! Just enough PEM (RFC 7468) for key files, trust bundles and certificate
//! chains: split text into labelled blocks and encode one block.
//!
//! Text between blocks is ignored, so CA bundles with comments or the
//! `subject=`/`issuer=` lines `openssl x509` prints still parse. Inside a
//! block everything must be base64; RFC 1421 headers (old encrypted keys)
//! are refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Width of base64 lines in the PEM this crate writes (RFC 7468).
const LINE_WIDTH: usize = 64;

/// One decoded `-----BEGIN <label>-----` … `-----END <label>-----` block.
#[derive(Debug)]
pub(crate) struct Block {
    /// The label, e.g. `CERTIFICATE` or `PUBLIC KEY`.
    pub label: String,
    /// The decoded contents.
    pub der: Vec<u8>,
}

/// Why text is not a sequence of PEM blocks. Blocks are counted from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// A BEGIN line without its END line.
    #[error("PEM block {index} (`{label}`) has no `-----END {label}-----` line")]
    Unterminated {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
    },
    /// An END line whose label differs from the BEGIN line's.
    #[error("PEM block {index} begins as `{label}` but ends as `{end}`")]
    MismatchedEnd {
        /// Which block, from 1.
        index: usize,
        /// The BEGIN label.
        label: String,
        /// The END label.
        end: String,
    },
    /// RFC 1421 headers such as `Proc-Type: 4,ENCRYPTED`.
    #[error("PEM block {index} (`{label}`) has headers (`{header}`); encrypted PEM is not supported")]
    Headers {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
        /// The first header line.
        header: String,
    },
    /// The body is not base64.
    #[error("PEM block {index} (`{label}`) is not valid base64: {reason}")]
    Base64 {
        /// Which block, from 1.
        index: usize,
        /// Its label.
        label: String,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Splits `text` into its PEM blocks, in order; text outside blocks is
/// skipped.
pub(crate) fn parse(text: &str) -> Result<Vec<Block>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = boundary(line.trim(), "BEGIN") else {
            continue;
        };
        let index = blocks.len() + 1;
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if let Some(end) = boundary(line, "END") {
                if end != label {
                    return Err(PemError::MismatchedEnd {
                        index,
                        label: label.to_string(),
                        end: end.to_string(),
                    });
                }
                ended = true;
                break;
            }
            if boundary(line, "BEGIN").is_some() {
                break;
            }
            if line.contains(':') {
                return Err(PemError::Headers {
                    index,
                    label: label.to_string(),
                    header: line.to_string(),
                });
            }
            body.push_str(line);
        }
        if !ended {
            return Err(PemError::Unterminated {
                index,
                label: label.to_string(),
            });
        }
        let der = BASE64.decode(body.as_bytes()).map_err(|e| PemError::Base64 {
            index,
            label: label.to_string(),
            reason: e.to_string(),
        })?;
        blocks.push(Block {
            label: label.to_string(),
            der,
        });
    }
    Ok(blocks)
}

/// `-----BEGIN LABEL-----` → `LABEL` (for `kind` = `BEGIN`).
fn boundary<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")
}

/// Encodes one PEM block with 64-character lines and a final newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so slicing at any byte offset is a char boundary.
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(LINE_WIDTH));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
