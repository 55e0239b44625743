//! Where `ui-proxy.call-route(route, …)` may go (P-01).
//!
//! A call goes to `UI_PROXY_BASE_URL` + `/{extension}` + `route`, where
//! `{extension}` is the calling extension's id (from the envelope, one
//! percent-encoded path segment). That is the extension's own prefix: the
//! host product serves each extension's UI routes under its id
//! (`/api/internal/ui-proxy/{extensionId}/{...route}` in Alga), so a guest
//! can reach its own routes and nothing else on the host.
//!
//! The route is checked *after* percent-decoding, segment by segment, and
//! the URL is then rebuilt from the decoded segments, so what the host sees
//! is exactly what was checked. Refused (`bad-request`): a route that does
//! not start with `/`, longer than [`MAX_ROUTE_BYTES`], with non-ASCII,
//! spaces, control characters, `\` or `#`; a segment that is empty (`//`,
//! which also covers `//host` and `/http://…`), `.` or `..` in any encoding
//! (`%2e%2e`), that decodes to `/`, `\`, `%` (double encoding such as
//! `%252e`) or a control character, or has a malformed `%` escape. A query
//! after `?` is passed through as given, and one trailing `/` is kept. The
//! result must still be on the base's origin and under
//! `{base path}/{extension}/`, which is checked again on the final URL.

use reqwest::Url;

/// Longest route a guest may pass (the path and query after the prefix).
pub const MAX_ROUTE_BYTES: usize = 1024;

/// Why a route was refused (logged; the guest sees `bad-request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefusal {
    #[error("the route must start with `/` and be at most {MAX_ROUTE_BYTES} printable ASCII bytes without `\\` or `#`")]
    Shape,
    #[error("the route has an empty segment (`//`)")]
    EmptySegment,
    #[error("the route has a malformed percent escape")]
    BadEscape,
    #[error("a route segment is `.` or `..` once decoded")]
    DotSegment,
    #[error("a route segment decodes to `/`, `\\`, `%` or a control character")]
    EncodedSeparator,
    #[error("the extension id cannot be a path segment")]
    Extension,
    #[error("UI_PROXY_BASE_URL cannot be a base for routes")]
    Base,
    #[error("the route leaves the extension's prefix")]
    Escapes,
}

/// The URL `route` of `extension` goes to under `base`.
///
/// # Errors
/// [`RouteRefusal`] saying why the route is refused.
pub fn route_url(base: &str, extension: &str, route: &str) -> Result<Url, RouteRefusal> {
    let shape_ok = route.starts_with('/')
        && route.len() <= MAX_ROUTE_BYTES
        && route.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#');
    if !shape_ok {
        return Err(RouteRefusal::Shape);
    }
    let (path, query) = match route.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (route, None),
    };
    let path = &path[1..];
    let (path, trailing_slash) = match path.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => (stripped, true),
        _ => (path, false),
    };
    let mut segments = Vec::new();
    for raw in path.split('/') {
        if raw.is_empty() {
            return Err(RouteRefusal::EmptySegment);
        }
        let decoded = percent_decode(raw).ok_or(RouteRefusal::BadEscape)?;
        if decoded == "." || decoded == ".." {
            return Err(RouteRefusal::DotSegment);
        }
        if decoded.chars().any(|c| matches!(c, '/' | '\\' | '%') || c.is_control()) {
            return Err(RouteRefusal::EncodedSeparator);
        }
        segments.push(decoded);
    }
    if extension.is_empty() || extension == "." || extension == ".." || extension.chars().any(char::is_control) {
        return Err(RouteRefusal::Extension);
    }

    let mut url = Url::parse(base).map_err(|_| RouteRefusal::Base)?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(RouteRefusal::Base);
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().map_err(|_| RouteRefusal::Base)?;
        path.pop_if_empty().push(extension);
        path.extend(&segments);
        if trailing_slash {
            path.push("");
        }
    }
    url.set_query(query);

    // Defence in depth: whatever the URL library did, the result must be on
    // the base's origin and under the extension's prefix.
    let mut prefix = Url::parse(base).map_err(|_| RouteRefusal::Base)?;
    prefix.set_query(None);
    prefix.set_fragment(None);
    prefix
        .path_segments_mut()
        .map_err(|_| RouteRefusal::Base)?
        .pop_if_empty()
        .push(extension)
        .push("");
    if url.origin() != prefix.origin() || !url.path().starts_with(prefix.path()) {
        return Err(RouteRefusal::Escapes);
    }
    Ok(url)
}

/// `text` with `%XX` escapes decoded, or `None` for a malformed escape or
/// bytes that are not UTF-8 (also the gateway's path check).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://host.internal:3000/api/internal/ui-proxy";

    /// P-01: traversal in every encoding, encoded separators, backslashes,
    /// absolute and protocol-relative URLs are refused; plain routes stay
    /// under `{base}/{extension}/`.
    #[test]
    fn p01_routes_are_decoded_normalised_then_checked() {
        let ok = |route: &str| route_url(BASE, "com.acme.x", route).map(|u| u.to_string());
        assert_eq!(
            ok("/api/echo").unwrap(),
            "http://host.internal:3000/api/internal/ui-proxy/com.acme.x/api/echo"
        );
        assert_eq!(
            ok("/items/a%20b?limit=5&x=%2e%2e").unwrap(),
            "http://host.internal:3000/api/internal/ui-proxy/com.acme.x/items/a%20b?limit=5&x=%2e%2e"
        );
        assert_eq!(
            ok("/list/").unwrap(),
            "http://host.internal:3000/api/internal/ui-proxy/com.acme.x/list/"
        );
        let refused = [
            ("/%2e%2e/%2e%2e/admin", RouteRefusal::DotSegment),
            ("/%2E%2E/admin", RouteRefusal::DotSegment),
            ("/.%2e/admin", RouteRefusal::DotSegment),
            ("/api/../admin", RouteRefusal::DotSegment),
            ("/api/./x", RouteRefusal::DotSegment),
            ("/..", RouteRefusal::DotSegment),
            ("/api%2f..%2f..%2fadmin", RouteRefusal::EncodedSeparator),
            ("/api%2F..%2Fadmin", RouteRefusal::EncodedSeparator),
            ("/api%5c..%5cadmin", RouteRefusal::EncodedSeparator),
            ("/%252e%252e/admin", RouteRefusal::EncodedSeparator),
            ("/a%00b", RouteRefusal::EncodedSeparator),
            ("/a%zz", RouteRefusal::BadEscape),
            ("/a%2", RouteRefusal::BadEscape),
            ("/a%ff", RouteRefusal::BadEscape),
            ("/api\\..\\admin", RouteRefusal::Shape),
            ("http://evil.example/x", RouteRefusal::Shape),
            ("api/echo", RouteRefusal::Shape),
            ("", RouteRefusal::Shape),
            ("/a b", RouteRefusal::Shape),
            ("/a#frag", RouteRefusal::Shape),
            ("/é", RouteRefusal::Shape),
            ("//evil.example/x", RouteRefusal::EmptySegment),
            ("/http://evil.example/x", RouteRefusal::EmptySegment),
            ("/a//b", RouteRefusal::EmptySegment),
            ("/", RouteRefusal::EmptySegment),
        ];
        for (route, why) in refused {
            assert_eq!(route_url(BASE, "com.acme.x", route), Err(why), "{route}");
        }
        assert_eq!(
            route_url(BASE, "com.acme.x", &format!("/{}", "a".repeat(MAX_ROUTE_BYTES))),
            Err(RouteRefusal::Shape)
        );
    }

    /// P-01: the extension id is one segment whatever it contains, and the
    /// base's own path, query or trailing slash do not change the prefix.
    #[test]
    fn p01_extension_prefix_is_one_segment() {
        assert_eq!(
            route_url("http://h/base/", "a/../b", "/x").unwrap().as_str(),
            "http://h/base/a%2F..%2Fb/x"
        );
        assert_eq!(route_url("http://h", "ext", "/x").unwrap().as_str(), "http://h/ext/x");
        assert_eq!(
            route_url("http://h/p?k=v", "ext", "/x").unwrap().as_str(),
            "http://h/p/ext/x"
        );
        for extension in ["", ".", ".."] {
            assert_eq!(route_url("http://h", extension, "/x"), Err(RouteRefusal::Extension));
        }
        assert_eq!(route_url("mailto:x@y", "ext", "/x"), Err(RouteRefusal::Base));
    }
}
