//! Where a bundle sits in the store: the validated key layout
//! (`BUNDLE_STORAGE_KEY_LAYOUT`) and the escaping of ids into key segments.

use std::fmt;

use ext_bundle::Digest;

/// Key of a bundle when `BUNDLE_STORAGE_KEY_LAYOUT` is unset.
pub const DEFAULT_KEY_LAYOUT: &str = "sha256/{hex}/bundle.tar.zst";

/// Detached signature beside a bundle (base64 text, see `ext_bundle::signature`).
pub const SIGNATURE_FILE_NAME: &str = "bundle.sig";

/// Certificate chain beside a bundle (PEM: leaf first, then intermediates).
pub const CERTIFICATES_FILE_NAME: &str = "bundle.pem";

/// The bundle's manifest, copied beside it so catalogues can read it without
/// downloading the archive.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// The keys of one bundle and the files beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleKeys {
    /// The archive (`…/bundle.tar.zst` with the default layout).
    pub bundle: String,
    /// `…/bundle.sig`: the detached signature.
    pub signature: String,
    /// `…/bundle.pem`: the signer's certificate chain, when certificate-signed.
    pub certificates: String,
    /// `…/manifest.json`: a copy of the bundle's manifest.
    pub manifest: String,
}

/// A validated `BUNDLE_STORAGE_KEY_LAYOUT` template.
///
/// Placeholders: `{hex}` (the content hash, required, in a directory
/// segment), `{tenant}` and `{extension}`. The last segment is a literal file
/// name; the signature, certificates and manifest share its directory, which
/// `{hex}` makes unique per bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLayout {
    template: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout {
            template: DEFAULT_KEY_LAYOUT.to_string(),
        }
    }
}

impl fmt::Display for KeyLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

const PLACEHOLDERS: [&str; 3] = ["{hex}", "{tenant}", "{extension}"];

impl KeyLayout {
    /// Validate a layout template.
    ///
    /// # Errors
    /// A message naming the rule the template breaks.
    pub fn parse(template: &str) -> Result<KeyLayout, String> {
        if template.is_empty() {
            return Err("must not be empty".to_string());
        }
        if template.starts_with('/') {
            return Err(format!("`{template}`: must be relative (no leading `/`)"));
        }
        let segments: Vec<&str> = template.split('/').collect();
        let (file_name, dirs) = segments.split_last().expect("split yields at least one segment");
        for segment in &segments {
            if segment.is_empty() {
                return Err(format!("`{template}`: empty path segment (`//` or a trailing `/`)"));
            }
            if *segment == "." || *segment == ".." {
                return Err(format!("`{template}`: `{segment}` segments are not allowed"));
            }
            let mut rest = *segment;
            while let Some(open) = rest.find('{') {
                let close = rest[open..]
                    .find('}')
                    .map(|i| open + i)
                    .ok_or_else(|| format!("`{template}`: unclosed `{{`"))?;
                let placeholder = &rest[open..=close];
                if !PLACEHOLDERS.contains(&placeholder) {
                    return Err(format!(
                        "`{template}`: unknown placeholder `{placeholder}` (known: {{hex}}, {{tenant}}, {{extension}})"
                    ));
                }
                check_literal(template, &rest[..open])?;
                rest = &rest[close + 1..];
            }
            check_literal(template, rest)?;
        }
        if file_name.contains('{') {
            return Err(format!(
                "`{template}`: the last segment must be a literal file name like `bundle.tar.zst` (the signature sits beside it)"
            ));
        }
        if [SIGNATURE_FILE_NAME, CERTIFICATES_FILE_NAME, MANIFEST_FILE_NAME].contains(file_name) {
            return Err(format!(
                "`{template}`: the file name `{file_name}` is reserved for the files beside the bundle"
            ));
        }
        if !dirs.iter().any(|d| d.contains("{hex}")) {
            return Err(format!(
                "`{template}`: a directory segment must contain `{{hex}}` so every bundle gets its own directory"
            ));
        }
        Ok(KeyLayout {
            template: template.to_string(),
        })
    }

    /// The template as configured.
    /// Whether keys depend on the tenant or extension, so the same content
    /// hash may be published for one (tenant, extension) and not another.
    pub fn is_scoped(&self) -> bool {
        self.template.contains("{tenant}") || self.template.contains("{extension}")
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    /// The bundle's key. `tenant` and `extension` are escaped into single
    /// safe segments (see [`escape_segment`]).
    pub fn render(&self, digest: &Digest, tenant: &str, extension: &str) -> String {
        self.template
            .replace("{hex}", &digest.hex())
            .replace("{tenant}", &escape_segment(tenant))
            .replace("{extension}", &escape_segment(extension))
    }

    /// The bundle's key and the keys of the files beside it.
    pub fn keys(&self, digest: &Digest, tenant: &str, extension: &str) -> BundleKeys {
        let bundle = self.render(digest, tenant, extension);
        let dir = bundle.rsplit_once('/').map_or("", |(dir, _)| dir);
        let beside = |name: &str| format!("{dir}/{name}");
        BundleKeys {
            signature: beside(SIGNATURE_FILE_NAME),
            certificates: beside(CERTIFICATES_FILE_NAME),
            manifest: beside(MANIFEST_FILE_NAME),
            bundle,
        }
    }
}

/// Literal parts of a template: characters that mean the same in every
/// store (S3 keys, URLs and file names) without escaping.
fn check_literal(template: &str, literal: &str) -> Result<(), String> {
    match literal.chars().find(|c| !is_safe_key_char(*c)) {
        Some(c) => Err(format!(
            "`{template}`: character {c:?} is not allowed (letters, digits, `.`, `_`, `-`, `/` and placeholders)"
        )),
        None => Ok(()),
    }
}

fn is_safe_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Escape a tenant or extension id into one key segment: letters, digits,
/// `_`, `-` and inner `.` stay; every other byte becomes `%XX`, as does a
/// leading `.` (so `.` and `..` cannot appear). An empty id becomes `_`.
/// Ids come from request envelopes, so they must never add or climb
/// directories.
pub fn escape_segment(value: &str) -> String {
    if value.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, byte) in value.bytes().enumerate() {
        let c = byte as char;
        if byte.is_ascii() && is_safe_key_char(c) && !(i == 0 && c == '.') {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
