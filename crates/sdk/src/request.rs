//! [`Request`]: the inbound HTTP request and the context it runs in.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::alga::extension::types::{ContextData, ExecuteRequest};

/// Who and what an invocation is for: tenant, extension, install, version, request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    /// The runner's request id, for correlating logs.
    pub request_id: Option<String>,
    /// The tenant the extension is installed for.
    pub tenant_id: String,
    /// The extension's id.
    pub extension_id: String,
    /// The install, when the gateway sent one.
    pub install_id: Option<String>,
    /// The extension version, when the gateway sent one.
    pub version_id: Option<String>,
}

impl From<ContextData> for Context {
    fn from(raw: ContextData) -> Self {
        Self {
            request_id: raw.request_id,
            tenant_id: raw.tenant_id,
            extension_id: raw.extension_id,
            install_id: raw.install_id,
            version_id: raw.version_id,
        }
    }
}

/// An HTTP request routed to the extension.
#[derive(Debug, Clone)]
pub struct Request {
    context: Context,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl From<ExecuteRequest> for Request {
    fn from(raw: ExecuteRequest) -> Self {
        Self {
            context: raw.context.into(),
            method: raw.http.method,
            url: raw.http.url,
            headers: raw.http.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: raw.http.body,
        }
    }
}

impl Request {
    /// A request built by hand, e.g. to unit-test a handler natively.
    pub fn new(context: Context, method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            context,
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header (builder style, for tests).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style, for tests).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Tenant, extension, install, version and request id.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The HTTP method as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL as the runner passed it: the path, then `?` and the query if any.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path part of the URL, still percent-encoded (`/hello/J%C3%BCrgen`).
    ///
    /// An absolute URL (`https://host/p?q`) yields its path (`/p`).
    pub fn path(&self) -> &str {
        let mut rest = self.url.as_str();
        if let Some(scheme_end) = rest.find("://")
            && !rest[..scheme_end].contains('/')
        {
            let after = &rest[scheme_end + 3..];
            rest = after.find('/').map_or("/", |slash| &after[slash..]);
        }
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The raw query string (without `?`), if the URL has one.
    pub fn query_string(&self) -> Option<&str> {
        let (_, after) = self.url.split_once('?')?;
        Some(after.split_once('#').map_or(after, |(query, _)| query))
    }

    /// Decoded query pairs in order, repeated keys kept (`+` is a space).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(query) = self.query_string() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query_component(name), decode_query_component(value))
            })
            .collect()
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find_map(|(key, value)| (key == name).then_some(value))
    }

    /// Matches the path against a pattern with `:param` segments, as in the manifest.
    ///
    /// `req.match_path("/hello/:name")` on `/hello/J%C3%BCrgen` gives `name = "Jürgen"`.
    /// One trailing slash is ignored on either side.
    pub fn match_path(&self, pattern: &str) -> Option<PathParams> {
        match_path(pattern, self.path())
    }

    /// All headers in the order received, names as sent.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body bytes; empty when the request had none.
    pub fn body(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }

    /// The body, telling "no body" (`None`) from an empty one (`Some([])`).
    pub fn body_opt(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Option<Vec<u8>> {
        self.body
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    /// `400 bad_request` if the body is not valid UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(self.body()).map_err(|e| Error::bad_request(format!("body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// `400 bad_request` if there is no body or it does not parse as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let body = self
            .body_opt()
            .ok_or_else(|| Error::bad_request("a JSON body is required"))?;
        serde_json::from_slice(body).map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Values captured by [`Request::match_path`], percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The value captured for `:name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value.as_str()))
    }

    /// All captures in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn match_path(pattern: &str, path: &str) -> Option<PathParams> {
    let trim = |s: &'_ str| -> String {
        let s = s.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(s);
        s.to_owned()
    };
    let (pattern, path) = (trim(pattern), trim(path));
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(PathParams(params)),
            (Some(w), Some(h)) => {
                if let Some(name) = w.strip_prefix(':') {
                    if h.is_empty() {
                        return None;
                    }
                    params.push((name.to_owned(), percent_decode(h)));
                } else if w != h {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as written); invalid UTF-8 is replaced.
pub fn percent_decode(input: &str) -> String {
    decode(input, false)
}

fn decode_query_component(input: &str) -> String {
    decode(input, true)
}

fn decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            request_id: Some("r1".into()),
            tenant_id: "t1".into(),
            extension_id: "e1".into(),
            install_id: None,
            version_id: None,
        }
    }

    fn get(url: &str) -> Request {
        Request::new(ctx(), "GET", url)
    }

    #[test]
    fn path_strips_query_fragment_and_origin() {
        let cases = [
            ("/hello", "/hello"),
            ("/hello?name=x", "/hello"),
            ("/hello#frag", "/hello"),
            ("/a/b?x=1#f", "/a/b"),
            ("https://example.com/p/q?x", "/p/q"),
            ("https://example.com", "/"),
            ("/redirect?to=https://x/y", "/redirect"),
            ("", ""),
        ];
        for (url, path) in cases {
            assert_eq!(get(url).path(), path, "url {url:?}");
        }
    }

    #[test]
    fn query_pairs_decode_and_keep_order_and_repeats() {
        let req = get("/x?a=1&b=two+words&a=3&empty=&flag&&c=%E2%9C%93&bad=%zz%4#frag");
        assert_eq!(
            req.query_pairs(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into()),
                ("a".into(), "3".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into()),
                ("c".into(), "✓".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(req.query("a").as_deref(), Some("1"));
        assert_eq!(req.query("missing"), None);
        assert_eq!(get("/x").query_pairs(), vec![]);
        assert_eq!(get("/x?").query_string(), Some(""));
    }

    #[test]
    fn headers_are_case_insensitive_first_wins() {
        let req = get("/")
            .with_header("Content-Type", "application/json")
            .with_header("X-Multi", "1")
            .with_header("x-multi", "2");
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("X-MULTI"), Some("1"));
        assert_eq!(req.header("absent"), None);
        assert_eq!(req.headers().len(), 3);
    }

    #[test]
    fn body_none_differs_from_empty() {
        assert_eq!(get("/").body_opt(), None);
        assert_eq!(get("/").body(), b"");
        assert_eq!(get("/").with_body(Vec::new()).body_opt(), Some(&b""[..]));
    }

    #[test]
    fn json_and_text_errors_are_bad_requests() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct In {
            n: u32,
        }
        let ok = get("/").with_body(br#"{"n": 7}"#.to_vec());
        assert_eq!(ok.json::<In>().unwrap(), In { n: 7 });
        assert_eq!(get("/").json::<In>().unwrap_err().status(), 400);
        assert_eq!(
            get("/").with_body(b"{".to_vec()).json::<In>().unwrap_err().status(),
            400
        );
        assert_eq!(get("/").with_body(vec![0xff]).text().unwrap_err().status(), 400);
        assert_eq!(get("/").with_body(b"hi".to_vec()).text().unwrap(), "hi");
    }

    #[test]
    fn match_path_table() {
        /// (pattern, path, expected captures or no match)
        type Case = (
            &'static str,
            &'static str,
            Option<&'static [(&'static str, &'static str)]>,
        );
        let cases: &[Case] = &[
            ("/hello", "/hello", Some(&[])),
            ("/hello", "/hello/", Some(&[])),
            ("/hello/", "/hello", Some(&[])),
            ("/hello", "/hello/x", None),
            ("/hello/:name", "/hello", None),
            ("/hello/:name", "/hello/", None),
            ("/hello/:name", "/hello/bob", Some(&[("name", "bob")])),
            ("/hello/:name", "/hello/J%C3%BCrgen", Some(&[("name", "Jürgen")])),
            ("/hello/:name", "/hello/a+b", Some(&[("name", "a+b")])),
            ("/a/:x/b/:y", "/a/1/b/2", Some(&[("x", "1"), ("y", "2")])),
            ("/a/:x/b/:y", "/a/1/c/2", None),
            ("/", "/", Some(&[])),
            ("/", "/x", None),
        ];
        for (pattern, path, want) in cases {
            let got = get(path).match_path(pattern);
            let want =
                want.map(|pairs| PathParams(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()));
            assert_eq!(got, want, "pattern {pattern:?} path {path:?}");
        }
    }

    #[test]
    fn percent_decode_edge_cases() {
        assert_eq!(percent_decode("%41%4a%4A"), "AJJ");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
