//! The UI settings (`EXT_UI_*`, `EXT_STATIC_MAX_FILE_BYTES`,
//! `RUNNER_UI_VALIDATE_*`) and the CSP every UI document carries.

use super::install_check::DEFAULT_VALIDATIONS_PER_SECOND;

/// Default Content-Security-Policy of UI HTML (`EXT_UI_CONTENT_SECURITY_POLICY`
/// replaces it): only the bundle's own scripts, styles and images; no
/// plugins, no `<base>`, no form posts; and [`UI_CSP_SANDBOX`].
pub const DEFAULT_UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'none'; sandbox allow-scripts allow-popups allow-modals allow-downloads";

/// U-03: the CSP `sandbox` directive every UI HTML response carries (added
/// to an operator's `EXT_UI_CONTENT_SECURITY_POLICY` that has none). Without
/// `allow-same-origin` the document gets an opaque origin even when opened
/// top-level on the runner's origin, so extensions share no cookies or
/// storage with each other or with the runner; inside the host's iframe the
/// iframe's own `sandbox` attribute applies as well (browsers grant only
/// what both allow: `allow-scripts` with the iframe bridge's default).
pub const UI_CSP_SANDBOX: &str = "sandbox allow-scripts allow-popups allow-modals allow-downloads";

/// The UI CSP with a `sandbox` directive: `csp` itself when it has one
/// without `allow-same-origin`, else `csp` plus [`UI_CSP_SANDBOX`].
///
/// # Errors
/// When `csp`'s own `sandbox` directive grants `allow-same-origin` (or
/// `allow-top-navigation*`), which would give every extension the runner's
/// origin (U-03).
pub fn with_sandbox(csp: &str) -> Result<String, String> {
    let sandbox = csp.split(';').map(str::trim).find(|directive| {
        directive
            .split_ascii_whitespace()
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("sandbox"))
    });
    match sandbox {
        None => {
            let csp = csp.trim().trim_end_matches(';').trim_end();
            Ok(if csp.is_empty() {
                UI_CSP_SANDBOX.to_string()
            } else {
                format!("{csp}; {UI_CSP_SANDBOX}")
            })
        }
        Some(directive) => {
            let refused = directive.split_ascii_whitespace().skip(1).find(|token| {
                let token = token.to_ascii_lowercase();
                token == "allow-same-origin" || token.starts_with("allow-top-navigation")
            });
            match refused {
                Some(token) => Err(format!(
                    "its `sandbox` directive must not grant `{token}` (UI documents get an opaque origin)"
                )),
                None => Ok(csp.to_string()),
            }
        }
    }
}

/// Largest UI file served (`EXT_STATIC_MAX_FILE_BYTES`), else 413.
pub const DEFAULT_STATIC_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// UI settings.
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// `EXT_UI_CONTENT_SECURITY_POLICY` (+ `EXT_UI_FRAME_ANCESTORS`), with
    /// the `sandbox` directive.
    pub csp: String,
    /// `EXT_STATIC_MAX_FILE_BYTES`.
    pub max_file_bytes: u64,
    /// `RUNNER_UI_VALIDATE_URL`.
    pub validate_url: Option<String>,
    /// `RUNNER_UI_VALIDATE_MAX_PER_SECOND`: install checks started per
    /// second (and burst).
    pub validate_per_second: u32,
}

impl UiConfig {
    pub fn from_source(source: &crate::config::source::Source) -> UiConfig {
        let mut csp = source.parsed(
            "EXT_UI_CONTENT_SECURITY_POLICY",
            DEFAULT_UI_CSP,
            with_sandbox,
            DEFAULT_UI_CSP.to_string(),
        );
        if let Some(ancestors) = source.text("EXT_UI_FRAME_ANCESTORS") {
            csp = format!("{csp}; frame-ancestors {ancestors}");
        }
        if csp.contains(['\r', '\n']) {
            source.problem("EXT_UI_CONTENT_SECURITY_POLICY/EXT_UI_FRAME_ANCESTORS: must be one line");
        }
        UiConfig {
            csp,
            max_file_bytes: source.bytes("EXT_STATIC_MAX_FILE_BYTES", DEFAULT_STATIC_MAX_FILE_BYTES, 0),
            validate_url: source.http_url("RUNNER_UI_VALIDATE_URL"),
            validate_per_second: source.number(
                "RUNNER_UI_VALIDATE_MAX_PER_SECOND",
                u64::from(DEFAULT_VALIDATIONS_PER_SECOND),
                1..=1_000_000,
            ) as u32,
        }
    }
}
