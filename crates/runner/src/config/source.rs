//! Where settings come from: the environment over a TOML file (`--config`)
//! over each reader's default, with command-line flags on top. Imports
//! nothing of the crate: every subsystem reads its own settings from a
//! [`Source`] (`Settings::from_source`), and the source collects every
//! problem so one start-up reports them all.
//!
//! The names a source was asked for are remembered: the list of known
//! settings is derived from the readers ([`Source::read_keys`]), never kept
//! by hand, and a key with one of our prefixes that no reader asked for is
//! reported as unknown.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

/// Every problem found while loading configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn sorted(mut problems: Vec<String>) -> ConfigError {
        problems.sort();
        ConfigError { problems }
    }
}

/// Prefixes of the names this runner owns: an unread key with one of them
/// is a typo, reported as an unknown setting.
pub const OWNED_PREFIXES: &[&str] = &["RUNNER_", "BUNDLE_STORAGE_", "GATEWAY_"];

/// Settings to read, and what went wrong reading them.
pub struct Source {
    values: HashMap<String, String>,
    /// `serve --dev`: loopback without tokens, pretty logs.
    dev: bool,
    read: RefCell<BTreeSet<&'static str>>,
    problems: RefCell<Vec<String>>,
}

impl Source {
    /// Settings from `values` (the environment, possibly merged over a file).
    pub fn new(values: HashMap<String, String>) -> Source {
        Source {
            values,
            dev: false,
            read: RefCell::default(),
            problems: RefCell::default(),
        }
    }

    /// `values` merged over the flat TOML file at `path` (same names as the
    /// environment, any case; arrays become comma-separated lists):
    /// defaults < file < environment. Keys are checked against `known`.
    ///
    /// # Errors
    /// Unreadable or invalid TOML, unknown keys and nested tables, all at
    /// once, each naming the file.
    pub fn with_file(
        values: HashMap<String, String>,
        path: &Path,
        known: &BTreeSet<&'static str>,
    ) -> Result<Source, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("--config {shown}: {e}")],
        })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            problems: vec![format!("--config {shown}: {}", e.to_string().trim())],
        })?;
        let mut merged = HashMap::new();
        let mut problems = Vec::new();
        for (key, value) in table {
            let name = key.to_ascii_uppercase();
            if !known.contains(name.as_str()) {
                problems.push(format!(
                    "--config {shown}: `{key}`: unknown setting (see the README's configuration table)"
                ));
                continue;
            }
            match toml_text(value) {
                Ok(text) => {
                    merged.insert(name, text);
                }
                Err(why) => problems.push(format!("--config {shown}: `{key}`: {why}")),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError::sorted(problems));
        }
        merged.extend(values);
        Ok(Source::new(merged))
    }

    /// A flag given on the command line wins over the file and environment.
    #[must_use]
    pub fn with_flag(mut self, key: &'static str, value: Option<String>) -> Source {
        if let Some(value) = value {
            self.values.insert(key.to_string(), value);
        }
        self
    }

    #[must_use]
    pub fn with_dev(mut self, dev: bool) -> Source {
        self.dev = dev;
        self
    }

    pub fn dev(&self) -> bool {
        self.dev
    }

    /// The trimmed value of `key`; unset and empty are the same.
    pub fn text(&self, key: &'static str) -> Option<&str> {
        self.read.borrow_mut().insert(key);
        self.values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A value that is not ours (`HOME`, `XDG_DATA_HOME`): read, not owned.
    pub fn foreign(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Record a problem (the message names its key).
    pub fn problem(&self, message: impl Into<String>) {
        self.problems.borrow_mut().push(message.into());
    }

    /// `key` parsed by `parse` (from `default` when unset); a refusal is
    /// recorded as `KEY: why` and `fallback` returned.
    pub fn parsed<T>(
        &self,
        key: &'static str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        fallback: T,
    ) -> T {
        let text = self.text(key).unwrap_or(default);
        parse(text).unwrap_or_else(|why| {
            self.problem(format!("{key}: {why}"));
            fallback
        })
    }

    /// An unsigned integer in `range`.
    pub fn number(&self, key: &'static str, default: u64, range: RangeInclusive<u64>) -> u64 {
        let Some(text) = self.text(key) else {
            return default;
        };
        match text.parse::<u64>() {
            Ok(v) if range.contains(&v) => v,
            _ => {
                let (min, max) = (range.start(), range.end());
                self.problem(format!("{key}: `{text}` must be an integer in {min}..={max}"));
                default
            }
        }
    }

    /// Milliseconds in `range`, as a duration.
    pub fn millis(&self, key: &'static str, default_ms: u64, range: RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.number(key, default_ms, range))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, any case).
    pub fn flag(&self, key: &'static str, default: bool) -> bool {
        let Some(text) = self.text(key) else {
            return default;
        };
        parse_bool(text).unwrap_or_else(|| {
            self.problem(format!("{key}: `{text}` must be true or false"));
            default
        })
    }

    /// A byte count of at least `min` ([`parse_bytes`]).
    pub fn bytes(&self, key: &'static str, default: u64, min: u64) -> u64 {
        let Some(text) = self.text(key) else {
            return default;
        };
        match parse_bytes(text) {
            Some(bytes) if bytes >= min => bytes,
            _ => {
                let least = if min > 0 {
                    format!(" of at least {min}")
                } else {
                    String::new()
                };
                self.problem(format!(
                    "{key}: `{text}` must be a byte count{least} like 33554432, 512MiB or 10GiB"
                ));
                default
            }
        }
    }

    /// An `http://` or `https://` URL.
    pub fn http_url(&self, key: &'static str) -> Option<String> {
        let url = self.text(key)?.to_string();
        if !is_http_url(&url) {
            self.problem(format!("{key}: `{url}` must be an http(s) URL"));
        }
        Some(url)
    }

    /// A socket address such as `0.0.0.0:8081`.
    pub fn addr(&self, key: &'static str) -> Option<SocketAddr> {
        let text = self.text(key)?;
        text.parse()
            .map_err(|_| self.problem(format!("{key}: `{text}` is not an address like 0.0.0.0:8081")))
            .ok()
    }

    /// Done reading one subsystem's settings (for a command that needs only
    /// those): every problem, without the unknown-key check.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem, sorted.
    pub fn finish_partial(self) -> Result<(), ConfigError> {
        let problems = self.problems.into_inner();
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::sorted(problems)),
        }
    }

    /// Every name a reader asked for so far.
    pub fn read_keys(&self) -> BTreeSet<&'static str> {
        self.read.borrow().clone()
    }

    /// Done reading: every problem, plus each key with one of our
    /// [`OWNED_PREFIXES`] that no reader asked for.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem, sorted.
    pub fn finish(self) -> Result<(), ConfigError> {
        let read = self.read.into_inner();
        let mut problems = self.problems.into_inner();
        for key in self.values.keys() {
            let ours = OWNED_PREFIXES.iter().any(|p| key.starts_with(p));
            if ours && !read.contains(key.as_str()) {
                problems.push(format!("{key}: unknown setting (see the README's configuration table)"));
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::sorted(problems)),
        }
    }
}

/// `true`/`1`/`yes` or `false`/`0`/`no`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// `123`, `512KiB`, `64MiB`, `10GiB` (binary units; `KB`/`MB`/`GB` too).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// Whether `url` starts with `http://` or `https://`.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A TOML value as the environment would spell it.
fn toml_text(value: toml::Value) -> Result<String, &'static str> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                toml::Value::Integer(i) => Ok(i.to_string()),
                _ => Err("arrays may hold only strings and integers"),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        _ => return Err("must be a string, number, boolean or array"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_bytes("512KiB"), Some(512 << 10));
        assert_eq!(parse_bytes("10GiB"), Some(10 << 30));
        assert_eq!(parse_bytes("7"), Some(7));
        assert_eq!(parse_bytes("7 parsecs"), None);
        assert_eq!(parse_bytes("99999999999999999999G"), None);
        assert_eq!(parse_bool("YES"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn readers_record_what_they_read_and_every_problem() {
        let source = Source::new(HashMap::from([
            ("RUNNER_A".to_string(), "12".to_string()),
            ("RUNNER_B".to_string(), "nope".to_string()),
            ("RUNNER_TYPO".to_string(), "1".to_string()),
            ("OTHER_THING".to_string(), "x".to_string()),
        ]));
        assert_eq!(source.number("RUNNER_A", 1, 1..=100), 12);
        assert!(source.flag("RUNNER_B", true), "the default on a bad value");
        assert_eq!(source.http_url("RUNNER_C"), None);
        assert_eq!(
            source.read_keys().into_iter().collect::<Vec<_>>(),
            ["RUNNER_A", "RUNNER_B", "RUNNER_C"]
        );
        let problems = source.finish().unwrap_err().problems;
        assert_eq!(
            problems,
            [
                "RUNNER_B: `nope` must be true or false",
                "RUNNER_TYPO: unknown setting (see the README's configuration table)"
            ]
        );
    }
}
