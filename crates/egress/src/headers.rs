//! Request headers: validation and the forbidden list (S-08), and secret handles: a header
//! value may contain `{{secret:NAME}}`, replaced by the value from the invocation's
//! [`SecretSource`] only once the destination has passed every check. Substituted values are
//! marked sensitive and never copied into an error.

use std::collections::HashMap;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS, MAX_SECRET_NAME_BYTES};
use crate::error::{EgressError, HeaderProblem, RequestPart, printable};

/// Where secret values come from; the runner provides one per invocation, scoped to the
/// tenant and extension (another tenant's secret is simply absent, K-03).
pub trait SecretSource: Send + Sync {
    /// The value of secret `name`, or `None` if this invocation has no such secret.
    fn secret(&self, name: &str) -> Option<String>;
}

/// No secrets at all: every reference is an unknown secret.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A fixed name → value map. Its `Debug` shows the names only.
#[derive(Default, Clone)]
pub struct StaticSecrets(pub HashMap<String, String>);

impl SecretSource for StaticSecrets {
    fn secret(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl fmt::Debug for StaticSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_struct("StaticSecrets")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

const SECRET_OPEN: &str = "{{secret:";
const SECRET_CLOSE: &str = "}}";

/// Request headers the host owns (S-08): the destination (`host`), the connection
/// (hop-by-hop), proxies, and `expect` (100-continue handling is the client's, and hyper's
/// HTTP/1 client does not do it).
fn is_forbidden(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "http2-settings"
    ) || name.starts_with("proxy-")
}

/// A byte HTTP allows in a field value: HTAB, visible ASCII, space, obs-text. Never CR, LF,
/// NUL or another control character.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// One piece of a header value.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Secret(String),
}

fn parse_template(value: &str) -> Result<Vec<Piece>, HeaderProblem> {
    let mut pieces = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find(SECRET_OPEN) {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + SECRET_OPEN.len()..];
        let end = after
            .find(SECRET_CLOSE)
            .ok_or(HeaderProblem::MalformedSecretReference)?;
        let name = &after[..end];
        if name.is_empty()
            || name.len() > MAX_SECRET_NAME_BYTES
            || name.contains(['{', '}'])
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(HeaderProblem::MalformedSecretReference);
        }
        pieces.push(Piece::Secret(name.to_owned()));
        rest = &after[end + SECRET_CLOSE.len()..];
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// Headers that passed validation, with their secret references still unresolved.
#[derive(Debug)]
pub(crate) struct CheckedHeaders {
    entries: Vec<(HeaderName, Vec<Piece>)>,
    /// A streamed body's declared `Content-Length`, sent as is (hyper then frames the body by
    /// it and fails the request if the body is shorter or longer).
    declared_length: Option<u64>,
}

/// The body a set of headers goes with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BodyLength {
    /// A buffered body of this many bytes.
    Known(usize),
    /// A body still being produced (its length is whatever `Content-Length` declares, or it
    /// is sent chunked).
    Streamed,
}

impl CheckedHeaders {
    /// Validates the guest's headers for a request whose body is `body_len` bytes. A
    /// `Content-Length` equal to the body length is dropped (the client sets it).
    ///
    /// # Errors
    /// [`EgressError::RequestTooLarge`], [`EgressError::InvalidHeader`] or
    /// [`EgressError::ForbiddenHeader`].
    pub(crate) fn check(headers: &[(String, String)], body_len: usize) -> Result<CheckedHeaders, EgressError> {
        CheckedHeaders::check_for(headers, BodyLength::Known(body_len))
    }

    /// [`CheckedHeaders::check`] for a body of `length`: a streamed body's `Content-Length`
    /// must be a number, and is kept.
    ///
    /// # Errors
    /// As [`CheckedHeaders::check`].
    pub(crate) fn check_for(headers: &[(String, String)], length: BodyLength) -> Result<CheckedHeaders, EgressError> {
        if headers.len() > MAX_REQUEST_HEADERS {
            return Err(EgressError::RequestTooLarge {
                part: RequestPart::HeaderCount,
                size: headers.len() as u64,
                limit: MAX_REQUEST_HEADERS as u64,
            });
        }
        let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if bytes > MAX_REQUEST_HEADER_BYTES {
            return Err(EgressError::RequestTooLarge {
                part: RequestPart::HeaderBytes,
                size: bytes as u64,
                limit: MAX_REQUEST_HEADER_BYTES as u64,
            });
        }
        let mut entries = Vec::with_capacity(headers.len());
        let mut declared_length = None;
        for (raw_name, value) in headers {
            let invalid = |problem| EgressError::InvalidHeader {
                name: printable(raw_name),
                problem,
            };
            let name = HeaderName::from_bytes(raw_name.as_bytes()).map_err(|_| invalid(HeaderProblem::InvalidName))?;
            if is_forbidden(&name) {
                return Err(EgressError::ForbiddenHeader {
                    name: printable(name.as_str()),
                });
            }
            if !value.bytes().all(is_value_byte) {
                return Err(invalid(HeaderProblem::InvalidValue));
            }
            if name == http::header::CONTENT_LENGTH {
                let parsed = value.trim().parse::<u64>().ok();
                match length {
                    BodyLength::Known(body_len) if parsed != Some(body_len as u64) => {
                        return Err(invalid(HeaderProblem::ContentLengthMismatch));
                    }
                    BodyLength::Known(_) => {}
                    BodyLength::Streamed => match (parsed, declared_length) {
                        (Some(len), None) => declared_length = Some(len),
                        _ => return Err(invalid(HeaderProblem::ContentLengthMismatch)),
                    },
                }
                continue;
            }
            let pieces = parse_template(value).map_err(invalid)?;
            entries.push((name, pieces));
        }
        Ok(CheckedHeaders {
            entries,
            declared_length,
        })
    }

    /// A streamed body's declared length, if it has one.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        self.declared_length
    }

    /// The first secret referenced, if any.
    pub(crate) fn first_secret(&self) -> Option<&str> {
        self.entries
            .iter()
            .flat_map(|(_, pieces)| pieces)
            .find_map(|p| match p {
                Piece::Secret(name) => Some(name.as_str()),
                Piece::Text(_) => None,
            })
    }

    /// Substitutes the secrets and appends every header to `map`, in order.
    ///
    /// # Errors
    /// [`EgressError::UnknownSecret`], or [`EgressError::InvalidHeader`] with
    /// [`HeaderProblem::InvalidSecretValue`] if a secret cannot be a header value (its value
    /// is not shown).
    pub(crate) fn render(&self, secrets: &dyn SecretSource, map: &mut HeaderMap) -> Result<(), EgressError> {
        for (name, pieces) in &self.entries {
            let mut value = String::new();
            let mut sensitive = false;
            for piece in pieces {
                match piece {
                    Piece::Text(text) => value.push_str(text),
                    Piece::Secret(secret) => {
                        let secret_value = secrets.secret(secret).ok_or_else(|| EgressError::UnknownSecret {
                            name: printable(secret),
                        })?;
                        value.push_str(&secret_value);
                        sensitive = true;
                    }
                }
            }
            let mut header = HeaderValue::from_str(&value).map_err(|_| EgressError::InvalidHeader {
                name: printable(name.as_str()),
                problem: if sensitive {
                    HeaderProblem::InvalidSecretValue
                } else {
                    HeaderProblem::InvalidValue
                },
            })?;
            header.set_sensitive(sensitive);
            map.append(name.clone(), header);
        }
        if let Some(len) = self.declared_length {
            map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn code(pairs: &[(&str, &str)]) -> &'static str {
        match CheckedHeaders::check(&headers(pairs), 0) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    /// S-08: host, hop-by-hop and proxy headers are the host's; CR/LF/NUL never pass.
    #[test]
    fn s08_forbidden_and_malformed_headers() {
        let cases: &[(&str, &str, &str)] = &[
            ("Host", "evil.com", "forbidden_header"),
            ("host", "allowed.com", "forbidden_header"),
            ("Connection", "close", "forbidden_header"),
            ("Keep-Alive", "timeout=5", "forbidden_header"),
            ("TE", "trailers", "forbidden_header"),
            ("Trailer", "x", "forbidden_header"),
            ("Transfer-Encoding", "chunked", "forbidden_header"),
            ("Upgrade", "websocket", "forbidden_header"),
            ("Expect", "100-continue", "forbidden_header"),
            ("Proxy-Authorization", "Basic eDp5", "forbidden_header"),
            ("Proxy-Connection", "keep-alive", "forbidden_header"),
            ("proxy-anything", "x", "forbidden_header"),
            ("X-Ok", "a\r\nInjected: 1", "invalid_header"),
            ("X-Ok", "a\nb", "invalid_header"),
            ("X-Ok", "a\rb", "invalid_header"),
            ("X-Ok", "a\0b", "invalid_header"),
            ("X-Ok", "a\x7fb", "invalid_header"),
            ("X-Bad\r\nInjected", "1", "invalid_header"),
            ("X Bad", "1", "invalid_header"),
            ("", "1", "invalid_header"),
            ("X-Nul\0", "1", "invalid_header"),
            ("Content-Length", "5", "invalid_header"),
            ("Content-Length", "0", "ok"),
            ("Authorization", "Bearer abc", "ok"),
            ("X-Tab", "a\tb", "ok"),
            ("X-Utf8", "caf\u{e9}", "ok"),
            ("X-Secret", "{{secret:KEY", "invalid_header"),
            ("X-Secret", "{{secret:}}", "invalid_header"),
            ("X-Secret", "{{secret:a b}}", "invalid_header"),
            ("X-Secret", "Bearer {{secret:KEY}}", "ok"),
            ("X-Braces", "{{not-a-secret}}", "ok"),
        ];
        for (name, value, expected) in cases {
            assert_eq!(code(&[(name, value)]), *expected, "{name:?}: {value:?}");
        }
        let err = CheckedHeaders::check(&headers(&[("X-Bad\r\nInjected", "1")]), 0).unwrap_err();
        assert!(
            !err.to_string().contains('\n') && !err.to_string().contains('\r'),
            "{err}"
        );
    }

    #[test]
    fn header_limits() {
        let many: Vec<(String, String)> = (0..=MAX_REQUEST_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        assert_eq!(CheckedHeaders::check(&many, 0).unwrap_err().code(), "request_too_large");
        let big = headers(&[("x-big", &"v".repeat(MAX_REQUEST_HEADER_BYTES))]);
        assert_eq!(CheckedHeaders::check(&big, 0).unwrap_err().code(), "request_too_large");
    }

    /// Item 10: a streamed body keeps its declared length (one, numeric); a buffered body's is
    /// checked against the body and left to the client.
    #[test]
    fn streamed_body_keeps_its_declared_length() {
        let checked = CheckedHeaders::check_for(&headers(&[("Content-Length", "5")]), BodyLength::Streamed).unwrap();
        assert_eq!(checked.declared_length(), Some(5));
        let mut map = HeaderMap::new();
        checked.render(&NoSecrets, &mut map).unwrap();
        assert_eq!(map["content-length"], "5");
        let none = CheckedHeaders::check_for(&headers(&[("X-A", "1")]), BodyLength::Streamed).unwrap();
        assert_eq!(none.declared_length(), None);
        for bad in [
            &[("Content-Length", "five")][..],
            &[("Content-Length", "1"), ("content-length", "1")],
        ] {
            let err = CheckedHeaders::check_for(&headers(bad), BodyLength::Streamed).unwrap_err();
            assert_eq!(err.code(), "invalid_header", "{bad:?}");
        }
        let buffered = CheckedHeaders::check(&headers(&[("Content-Length", "3")]), 3).unwrap();
        assert_eq!(buffered.declared_length(), None);
    }

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("Bearer {{secret:A}} and {{secret:b.c}}!").unwrap(),
            [
                Piece::Text("Bearer ".into()),
                Piece::Secret("A".into()),
                Piece::Text(" and ".into()),
                Piece::Secret("b.c".into()),
                Piece::Text("!".into())
            ]
        );
        assert_eq!(parse_template("").unwrap(), [Piece::Text(String::new())]);
        assert_eq!(
            parse_template(&format!("{{{{secret:{}}}}}", "n".repeat(MAX_SECRET_NAME_BYTES + 1))),
            Err(HeaderProblem::MalformedSecretReference)
        );
    }

    #[test]
    fn render_substitutes_and_hides() {
        let secrets = StaticSecrets(HashMap::from([
            ("KEY".to_owned(), "s3cr3t-value".to_owned()),
            ("BAD".to_owned(), "evil\r\nInjected: 1".to_owned()),
        ]));
        assert!(!format!("{secrets:?}").contains("s3cr3t"));

        let checked =
            CheckedHeaders::check(&headers(&[("Authorization", "Bearer {{secret:KEY}}"), ("X-A", "1")]), 0).unwrap();
        assert_eq!(checked.first_secret(), Some("KEY"));
        let mut map = HeaderMap::new();
        checked.render(&secrets, &mut map).unwrap();
        assert_eq!(map["authorization"], "Bearer s3cr3t-value");
        assert!(map["authorization"].is_sensitive() && !map["x-a"].is_sensitive());
        assert!(!format!("{map:?}").contains("s3cr3t"));

        let unknown = CheckedHeaders::check(&headers(&[("X", "{{secret:NOPE}}")]), 0).unwrap();
        let err = unknown.render(&secrets, &mut HeaderMap::new()).unwrap_err();
        assert_eq!(err.code(), "unknown_secret");

        let bad = CheckedHeaders::check(&headers(&[("X", "{{secret:BAD}}")]), 0).unwrap();
        let err = bad.render(&secrets, &mut HeaderMap::new()).unwrap_err();
        assert_eq!(err.code(), "invalid_header");
        assert!(!format!("{err} {err:?}").contains("evil"), "{err:?}");
    }
}
