//! Manifest v2: parsing, validation, normalisation and endpoint routing.
//!
//! [`Manifest::from_slice`] accepts every form deployed Alga bundles use
//! (unprefixed capabilities, handlers without `.wasm`, `./` prefixes), ignores
//! unknown fields and rejects anything malformed with a [`ManifestError`]
//! whose message names the offending field. Those messages are a contract:
//! the tests pin them word for word.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::relpath;

/// Name of the manifest file at the root of every bundle.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// Component loaded when the manifest names no `entry`.
pub const DEFAULT_ENTRY: &str = "dist/main.wasm";

/// UI entry page when `ui.entry` is absent.
pub const DEFAULT_UI_ENTRY: &str = "index.html";

/// The only UI kind the host renders.
pub const UI_KIND_IFRAME: &str = "iframe";

/// Longest accepted `name`, in characters: names end up in URLs, object-store
/// keys and log fields, where unbounded strings do harm.
pub const MAX_NAME_CHARS: usize = 128;

/// Capabilities that deployed manifests write without the `cap:` prefix, and
/// the canonical form each one means.
const CAPABILITY_SHORT_FORMS: &[(&str, &str)] = &[
    ("context.read", "cap:context.read"),
    ("http.fetch", "cap:http.fetch"),
    ("log", "cap:log.emit"),
    ("log.emit", "cap:log.emit"),
    ("metrics", "cap:metrics.emit"),
    ("metrics.emit", "cap:metrics.emit"),
    ("secrets.get", "cap:secrets.get"),
    ("storage.kv", "cap:storage.kv"),
    ("ui.proxy", "cap:ui.proxy"),
    ("user.read", "cap:user.read"),
];

/// A validated, normalised Manifest v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Reverse-domain extension name, e.g. `com.example.sales`.
    pub name: String,
    /// Free-form publisher name.
    pub publisher: Option<String>,
    /// Extension version.
    pub version: semver::Version,
    /// Runtime tag such as `wasm-js@1`; informational.
    pub runtime: Option<String>,
    /// Requested capabilities in canonical `cap:...` form, first occurrence
    /// order, without duplicates.
    pub capabilities: Vec<String>,
    /// Default component, a safe relative path (leading `./` removed).
    pub entry: String,
    /// HTTP endpoints from `api.endpoints`, in manifest order.
    pub endpoints: Vec<Endpoint>,
    /// Iframe UI, if the extension has one.
    pub ui: Option<Ui>,
    /// Precompiled artifacts: target triple to bundle path.
    pub precompiled: BTreeMap<String, String>,
    /// Asset globs, as written.
    pub assets: Vec<String>,
    /// Path of the SBOM inside the bundle.
    pub sbom: Option<String>,
    /// Event subscriptions, kept as given.
    pub events: Vec<Value>,
    /// `network.allowed_hosts`: egress destinations the extension declares
    /// (`https://api.example.com`, `https://*.example.org:8443`), as written;
    /// the runner parses and intersects them with the operator's policy and
    /// the install's list. `None` when the manifest has no `network` at all,
    /// as upstream manifests do: it then declares no list, and the install's
    /// list (or the operator's opt-in) decides. A `network` object without
    /// `allowed_hosts`, or with `[]`, declares an empty list: no host.
    pub allowed_hosts: Option<Vec<String>>,
}

/// One HTTP endpoint of the extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Upper-case HTTP method (a valid token).
    pub method: String,
    /// Route starting with `/`; `:name` segments match any one segment.
    pub path: String,
    /// Component that handles it, as written (see [`component_path`]).
    pub handler: String,
    /// Whether the scheduler may invoke it.
    pub schedulable: bool,
    /// The world the handler component implements (`world`; default
    /// `alga:extension/runner`).
    #[serde(skip_serializing_if = "World::is_runner")]
    pub world: World,
}

/// The contract a handler component implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum World {
    /// `alga:extension/runner`: exports `handler(execute-request) -> execute-response`.
    #[default]
    #[serde(rename = "alga:extension/runner")]
    Runner,
    /// `wasi:http/proxy`: exports `wasi:http/incoming-handler` (what
    /// `wasmtime serve` and Spin run).
    #[serde(rename = "wasi:http/proxy")]
    Proxy,
}

impl World {
    /// The name a manifest writes.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Runner => "alga:extension/runner",
            World::Proxy => "wasi:http/proxy",
        }
    }

    fn is_runner(&self) -> bool {
        *self == World::Runner
    }
}

/// The extension's iframe UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ui {
    /// UI kind; always `"iframe"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Entry page, relative to `ui/`.
    pub entry: String,
    /// Host menu hooks, kept as given (`null` when absent).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub hooks: Value,
}

/// Where in `manifest.json` the JSON syntax broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonPosition {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem with a manifest.
///
/// Displays as ``manifest.json: field `api.endpoints[2].path`: must start with '/'``,
/// or `manifest.json: invalid JSON at line L column C: ...` for syntax errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Path of the offending field, like `api.endpoints[2].path`; empty when
    /// the problem is the document as a whole.
    pub field: String,
    /// What is wrong, as a sentence fragment.
    pub reason: String,
    /// Set for JSON syntax errors.
    pub position: Option<JsonPosition>,
}

impl ManifestError {
    /// A problem with one field.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            position: None,
        }
    }

    fn json(err: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; the position
        // is reported separately, in front.
        let message = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let reason = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        Self {
            field: String::new(),
            reason,
            position: Some(JsonPosition {
                line: err.line(),
                column: err.column(),
            }),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.position, self.field.is_empty()) {
            (Some(JsonPosition { line, column }), _) => write!(
                f,
                "{MANIFEST_FILE_NAME}: invalid JSON at line {line} column {column}: {}",
                self.reason
            ),
            (None, true) => write!(f, "{MANIFEST_FILE_NAME}: {}", self.reason),
            (None, false) => write!(f, "{MANIFEST_FILE_NAME}: field `{}`: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Normalises an endpoint handler to the component path inside the bundle.
///
/// `dist/main` -> `dist/main.wasm`; `./dist/x.wasm` -> `dist/x.wasm`; leading
/// `/` is stripped. Performs no safety check: manifests are validated when parsed.
pub fn component_path(handler: &str) -> String {
    let mut path = handler;
    loop {
        if let Some(rest) = path.strip_prefix("./") {
            path = rest;
        } else if let Some(rest) = path.strip_prefix('/') {
            path = rest;
        } else {
            break;
        }
    }
    if path.ends_with(".wasm") {
        path.to_owned()
    } else {
        format!("{path}.wasm")
    }
}

impl Manifest {
    /// Parses and validates `manifest.json` bytes.
    ///
    /// # Errors
    ///
    /// Returns the first problem found, in document order; see
    /// [`Manifest::check`] for all of them at once.
    pub fn from_slice(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        Self::check(bytes).map_err(first_error)
    }

    /// Parses and validates `manifest.json` bytes, reporting every problem.
    ///
    /// # Errors
    ///
    /// Returns all problems, in document order (never an empty list).
    pub fn check(bytes: &[u8]) -> Result<Manifest, Vec<ManifestError>> {
        // Some editors save JSON with a UTF-8 byte-order mark; it carries no meaning.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value = serde_json::from_slice(bytes).map_err(|err| vec![ManifestError::json(&err)])?;
        Self::from_json_value(&value)
    }

    /// Validates an already-parsed JSON document.
    ///
    /// # Errors
    ///
    /// Returns all problems, in document order (never an empty list).
    pub fn from_json_value(value: &Value) -> Result<Manifest, Vec<ManifestError>> {
        let mut checker = Checker::default();
        let manifest = checker.manifest(value);
        match manifest {
            Some(manifest) if checker.errors.is_empty() => Ok(manifest),
            _ if checker.errors.is_empty() => Err(vec![ManifestError::new("", "is invalid")]),
            _ => Err(checker.errors),
        }
    }

    /// Finds the endpoint for a request.
    ///
    /// The method is compared case-insensitively. The path is matched segment
    /// by segment; a `:name` segment matches any one non-empty segment. When
    /// several endpoints match, the one with the most literal segments wins
    /// (then the one whose first literal comes earliest). Anything after `?`
    /// is ignored and a trailing `/` is tolerated. Segments are compared raw,
    /// without percent-decoding.
    pub fn resolve(&self, method: &str, path: &str) -> Option<&Endpoint> {
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        let request = route_segments(path);
        let mut best: Option<(RouteScore, &Endpoint)> = None;
        for endpoint in &self.endpoints {
            if !endpoint.method.eq_ignore_ascii_case(method) {
                continue;
            }
            let Some(score) = match_route(&route_segments(&endpoint.path), &request) else {
                continue;
            };
            // Strictly greater: on a tie the endpoint declared first stays.
            if best.as_ref().is_none_or(|(top, _)| score > *top) {
                best = Some((score, endpoint));
            }
        }
        best.map(|(_, endpoint)| endpoint)
    }

    /// Finds the first endpoint whose handler names the same component as `handler`.
    pub fn endpoint_by_handler(&self, handler: &str) -> Option<&Endpoint> {
        let wanted = component_path(handler);
        self.endpoints
            .iter()
            .find(|endpoint| component_path(&endpoint.handler) == wanted)
    }

    /// The world the component at `path` implements: that of the endpoints
    /// naming it (one world per component, checked at parse time), else
    /// `alga:extension/runner` (the `entry` without endpoints).
    pub fn component_world(&self, path: &str) -> World {
        self.endpoints
            .iter()
            .find(|endpoint| component_path(&endpoint.handler) == path)
            .map_or(World::Runner, |endpoint| endpoint.world)
    }

    /// The component path inside the bundle that handles `endpoint`.
    pub fn handler_component(&self, endpoint: &Endpoint) -> String {
        component_path(&endpoint.handler)
    }

    /// Files the manifest requires in the bundle, as `(field, path)` pairs:
    /// the `entry` and each distinct endpoint handler component.
    pub fn required_files(&self) -> Vec<(String, String)> {
        let mut seen = BTreeSet::new();
        let mut files = Vec::new();
        if seen.insert(self.entry.clone()) {
            files.push(("entry".to_owned(), self.entry.clone()));
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let path = component_path(&endpoint.handler);
            if seen.insert(path.clone()) {
                files.push((format!("api.endpoints[{index}].handler"), path));
            }
        }
        files
    }

    /// The manifest as indented Manifest v2 JSON, in normalised form.
    pub fn to_json_pretty(&self) -> String {
        // Only strings, booleans, string maps and JSON values are serialised:
        // this cannot fail.
        serde_json::to_string_pretty(self).expect("a manifest always serialises to JSON")
    }
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Api<'a> {
            endpoints: &'a [Endpoint],
        }
        #[derive(Serialize)]
        struct View<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            publisher: Option<&'a str>,
            version: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            runtime: Option<&'a str>,
            capabilities: &'a [String],
            entry: &'a str,
            api: Api<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ui: Option<&'a Ui>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            precompiled: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            assets: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            sbom: Option<&'a str>,
            #[serde(skip_serializing_if = "<[Value]>::is_empty")]
            events: &'a [Value],
            #[serde(skip_serializing_if = "Option::is_none")]
            network: Option<Network<'a>>,
        }
        #[derive(Serialize)]
        struct Network<'a> {
            allowed_hosts: &'a [String],
        }
        View {
            name: &self.name,
            publisher: self.publisher.as_deref(),
            version: self.version.to_string(),
            runtime: self.runtime.as_deref(),
            capabilities: &self.capabilities,
            entry: &self.entry,
            api: Api {
                endpoints: &self.endpoints,
            },
            ui: self.ui.as_ref(),
            precompiled: &self.precompiled,
            assets: &self.assets,
            sbom: self.sbom.as_deref(),
            events: &self.events,
            network: self
                .allowed_hosts
                .as_deref()
                .map(|allowed_hosts| Network { allowed_hosts }),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Manifest::from_json_value(&value).map_err(|errors| serde::de::Error::custom(first_error(errors)))
    }
}

fn first_error(errors: Vec<ManifestError>) -> ManifestError {
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| ManifestError::new("", "is invalid"))
}

/// Rank of a route match: literal segment count first, then literal positions
/// (an earlier literal beats a later one).
type RouteScore = (usize, Vec<bool>);

/// Splits a route or request path into segments, ignoring one leading and one
/// trailing `/`; the root is the empty list.
fn route_segments(path: &str) -> Vec<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

/// A route with every parameter segment written `:`: two endpoints with the
/// same method and shape match exactly the same requests.
fn route_shape(path: &str) -> Vec<String> {
    route_segments(path)
        .into_iter()
        .map(|segment| if segment.starts_with(':') { ":" } else { segment }.to_owned())
        .collect()
}

fn match_route(pattern: &[&str], request: &[&str]) -> Option<RouteScore> {
    if pattern.len() != request.len() {
        return None;
    }
    let mut literals = Vec::with_capacity(pattern.len());
    for (want, got) in pattern.iter().zip(request) {
        if want.starts_with(':') {
            if got.is_empty() {
                return None;
            }
            literals.push(false);
        } else if want == got {
            literals.push(true);
        } else {
            return None;
        }
    }
    let count = literals.iter().filter(|literal| **literal).count();
    Some((count, literals))
}

/// Collects every problem while walking the JSON document once.
#[derive(Default)]
struct Checker {
    errors: Vec<ManifestError>,
}

impl Checker {
    /// Records a problem. Reasons quote user input, so control characters
    /// are escaped to keep messages on one printable line.
    fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        let reason = printable(&reason.into());
        self.errors.push(ManifestError::new(printable(&field.into()), reason));
    }

    /// The value of `key`, treating `null` as absent.
    fn get<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
        object.get(key).filter(|value| !value.is_null())
    }

    fn string(&mut self, value: &Value, field: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.fail(field, format!("must be a string, found {}", kind(other)));
                None
            }
        }
    }

    fn optional_string(&mut self, object: &Map<String, Value>, key: &str, field: &str) -> Option<String> {
        Self::get(object, key).and_then(|value| self.string(value, field))
    }

    fn required_string(&mut self, object: &Map<String, Value>, key: &str, field: &str) -> Option<String> {
        match Self::get(object, key) {
            Some(value) => self.string(value, field),
            None => {
                self.fail(field, "is required");
                None
            }
        }
    }

    fn optional_array<'v>(&mut self, object: &'v Map<String, Value>, key: &str, field: &str) -> &'v [Value] {
        match Self::get(object, key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.fail(field, format!("must be an array, found {}", kind(other)));
                &[]
            }
        }
    }

    fn optional_object<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        field: &str,
    ) -> Option<&'v Map<String, Value>> {
        match Self::get(object, key)? {
            Value::Object(inner) => Some(inner),
            other => {
                self.fail(field, format!("must be an object, found {}", kind(other)));
                None
            }
        }
    }

    /// A bundle-relative path field: `./` stripped, then checked.
    fn relative_path(&mut self, path: String, field: &str) -> Option<String> {
        match relpath::normalise(&path) {
            Ok(normal) => Some(normal.to_owned()),
            Err(problem) => {
                self.fail(field, format!("`{path}` is not a safe relative path: it {problem}"));
                None
            }
        }
    }

    fn manifest(&mut self, value: &Value) -> Option<Manifest> {
        let Value::Object(root) = value else {
            self.fail("", format!("must be a JSON object, found {}", kind(value)));
            return None;
        };

        let name = self.required_string(root, "name", "name");
        if let Some(name) = &name
            && let Err(reason) = check_name(name)
        {
            self.fail("name", reason);
        }
        let publisher = self.optional_string(root, "publisher", "publisher");
        let version =
            self.required_string(root, "version", "version")
                .and_then(|text| match semver::Version::parse(&text) {
                    Ok(version) => Some(version),
                    Err(err) => {
                        self.fail(
                            "version",
                            format!("`{text}` is not a semantic version like `1.2.3`: {err}"),
                        );
                        None
                    }
                });
        let runtime = self.optional_string(root, "runtime", "runtime");
        let capabilities = self.capabilities(root);
        let entry = match self.optional_string(root, "entry", "entry") {
            Some(entry) => self.relative_path(entry, "entry"),
            None => Some(DEFAULT_ENTRY.to_owned()),
        };
        let endpoints = self.endpoints(root);
        let ui = self.ui(root);
        let precompiled = self.precompiled(root);
        let assets = self.assets(root);
        let sbom = self
            .optional_string(root, "sbom", "sbom")
            .and_then(|sbom| self.relative_path(sbom, "sbom"));
        let events = self.optional_array(root, "events", "events").to_vec();
        let allowed_hosts = self.allowed_hosts(root);

        Some(Manifest {
            name: name?,
            publisher,
            version: version?,
            runtime,
            capabilities,
            entry: entry?,
            endpoints,
            ui,
            precompiled,
            assets,
            sbom,
            events,
            allowed_hosts,
        })
    }

    /// `None` without a `network` object (see [`Manifest::allowed_hosts`]).
    fn allowed_hosts(&mut self, root: &Map<String, Value>) -> Option<Vec<String>> {
        let network = self.optional_object(root, "network", "network")?;
        let mut hosts = Vec::new();
        let list = self
            .optional_array(network, "allowed_hosts", "network.allowed_hosts")
            .to_vec();
        for (index, value) in list.iter().enumerate() {
            let field = format!("network.allowed_hosts[{index}]");
            if let Some(host) = self.string(value, &field) {
                hosts.push(host);
            }
        }
        Some(hosts)
    }

    fn capabilities(&mut self, root: &Map<String, Value>) -> Vec<String> {
        let mut capabilities: Vec<String> = Vec::new();
        for (index, item) in self
            .optional_array(root, "capabilities", "capabilities")
            .iter()
            .enumerate()
        {
            let field = format!("capabilities[{index}]");
            let Some(raw) = self.string(item, &field) else {
                continue;
            };
            match normalise_capability(&raw) {
                Ok(capability) => {
                    if !capabilities.contains(&capability) {
                        capabilities.push(capability);
                    }
                }
                Err(reason) => self.fail(field, reason),
            }
        }
        capabilities
    }

    fn endpoints(&mut self, root: &Map<String, Value>) -> Vec<Endpoint> {
        let Some(api) = self.optional_object(root, "api", "api") else {
            return Vec::new();
        };
        let mut endpoints = Vec::new();
        // Route shape (method, segments with every parameter written `:`) to
        // the index of the first endpoint that has it.
        let mut routes: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
        // Component path to the world and index of the first endpoint naming it.
        let mut worlds: BTreeMap<String, (World, usize)> = BTreeMap::new();
        for (index, item) in self
            .optional_array(api, "endpoints", "api.endpoints")
            .iter()
            .enumerate()
        {
            let field = format!("api.endpoints[{index}]");
            let Value::Object(object) = item else {
                self.fail(field, format!("must be an object, found {}", kind(item)));
                continue;
            };
            let Some(endpoint) = self.endpoint(object, &field) else {
                continue;
            };
            let component = component_path(&endpoint.handler);
            match worlds.get(&component) {
                Some((world, first)) if *world != endpoint.world => {
                    let reason = format!(
                        "`{}` conflicts with api.endpoints[{first}], which runs the same component `{component}` as `{}`",
                        endpoint.world.as_str(),
                        world.as_str()
                    );
                    self.fail(format!("{field}.world"), reason);
                    continue;
                }
                Some(_) => {}
                None => {
                    worlds.insert(component, (endpoint.world, index));
                }
            }
            let route = (endpoint.method.clone(), route_shape(&endpoint.path));
            match routes.get(&route) {
                Some(first) => {
                    let reason = format!(
                        "duplicates the route of api.endpoints[{first}] ({} {})",
                        endpoint.method, endpoint.path
                    );
                    self.fail(field, reason);
                }
                None => {
                    routes.insert(route, index);
                    endpoints.push(endpoint);
                }
            }
        }
        endpoints
    }

    fn endpoint(&mut self, object: &Map<String, Value>, field: &str) -> Option<Endpoint> {
        let method_field = format!("{field}.method");
        let method = self
            .required_string(object, "method", &method_field)
            .and_then(|method| {
                if is_http_token(&method) {
                    Some(method.to_ascii_uppercase())
                } else {
                    self.fail(&method_field, format!("`{method}` is not a valid HTTP method"));
                    None
                }
            });
        let path_field = format!("{field}.path");
        let path = self
            .required_string(object, "path", &path_field)
            .and_then(|path| match check_route(&path) {
                Ok(()) => Some(path),
                Err(reason) => {
                    self.fail(&path_field, reason);
                    None
                }
            });
        let handler_field = format!("{field}.handler");
        let handler = self
            .required_string(object, "handler", &handler_field)
            .and_then(|handler| match relpath::normalise(&handler) {
                Ok(_) => Some(handler),
                Err(problem) => {
                    self.fail(
                        &handler_field,
                        format!("`{handler}` is not a safe relative path: it {problem}"),
                    );
                    None
                }
            });
        let schedulable = match Self::get(object, "schedulable") {
            None => Some(false),
            Some(Value::Bool(flag)) => Some(*flag),
            Some(other) => {
                self.fail(
                    format!("{field}.schedulable"),
                    format!("must be a boolean, found {}", kind(other)),
                );
                None
            }
        };
        let world = match self.optional_string(object, "world", &format!("{field}.world")) {
            None => Some(World::Runner),
            Some(name) if name == World::Runner.as_str() => Some(World::Runner),
            Some(name) if name == World::Proxy.as_str() => Some(World::Proxy),
            Some(name) => {
                self.fail(
                    format!("{field}.world"),
                    format!(
                        "must be \"{}\" or \"{}\", found `{name}`",
                        World::Runner.as_str(),
                        World::Proxy.as_str()
                    ),
                );
                None
            }
        };
        Some(Endpoint {
            method: method?,
            path: path?,
            handler: handler?,
            schedulable: schedulable?,
            world: world?,
        })
    }

    fn ui(&mut self, root: &Map<String, Value>) -> Option<Ui> {
        let object = self.optional_object(root, "ui", "ui")?;
        let kind = match self.optional_string(object, "type", "ui.type") {
            None => Some(UI_KIND_IFRAME.to_owned()),
            Some(kind) if kind == UI_KIND_IFRAME => Some(kind),
            Some(kind) => {
                self.fail("ui.type", format!("must be \"iframe\", found `{kind}`"));
                None
            }
        };
        let entry = match self.optional_string(object, "entry", "ui.entry") {
            Some(entry) => self.relative_path(entry, "ui.entry"),
            None => Some(DEFAULT_UI_ENTRY.to_owned()),
        };
        let hooks = object.get("hooks").cloned().unwrap_or(Value::Null);
        Some(Ui {
            kind: kind?,
            entry: entry?,
            hooks,
        })
    }

    fn precompiled(&mut self, root: &Map<String, Value>) -> BTreeMap<String, String> {
        let mut precompiled = BTreeMap::new();
        let Some(object) = self.optional_object(root, "precompiled", "precompiled") else {
            return precompiled;
        };
        for (target, value) in object {
            let field = format!("precompiled.{target}");
            if target.is_empty()
                || !target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                self.fail(&field, "target name may contain only letters, digits, '.', '-' and '_'");
                continue;
            }
            if let Some(path) = self
                .string(value, &field)
                .and_then(|path| self.relative_path(path, &field))
            {
                precompiled.insert(target.clone(), path);
            }
        }
        precompiled
    }

    fn assets(&mut self, root: &Map<String, Value>) -> Vec<String> {
        let mut assets = Vec::new();
        for (index, item) in self.optional_array(root, "assets", "assets").iter().enumerate() {
            let field = format!("assets[{index}]");
            // Globs follow the same rules as paths: glob characters are
            // ordinary segment characters here.
            if let Some(glob) = self
                .string(item, &field)
                .and_then(|glob| self.relative_path(glob, &field))
            {
                assets.push(glob);
            }
        }
        assets
    }
}

/// `text` with control characters escaped.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The JSON type of `value`, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks an extension name: reverse-domain (`com.example.app`), at most
/// [`MAX_NAME_CHARS`], segments of `a-z`, `0-9`, `-` and `_`. The manifest's
/// `name` and the registry's routes share it.
///
/// # Errors
/// A message saying what is wrong with `name`.
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters, found {chars}"));
    }
    let segments: Vec<&str> = name.split('.').collect();
    if segments.len() < 2 {
        return Err(format!(
            "`{name}` is not a reverse-domain name like `com.example.app`: it needs at least two dot-separated segments"
        ));
    }
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(format!("`{name}` has an empty segment"));
    }
    if let Some(segment) = segments.iter().find(|segment| {
        !segment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }) {
        return Err(format!("segment `{segment}` may contain only a-z, 0-9, '-' and '_'"));
    }
    Ok(())
}

/// Maps a capability as written to its canonical `cap:` form (`storage.kv`
/// → `cap:storage.kv`; `cap:`-prefixed names are checked for shape only).
///
/// # Errors
/// A message naming the capability when it is neither form.
pub fn normalise_capability(raw: &str) -> Result<String, String> {
    if let Some(name) = raw.strip_prefix("cap:") {
        let mut chars = name.chars();
        let valid_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        return if valid_start && valid_rest {
            Ok(raw.to_owned())
        } else {
            Err(format!("capability `{raw}` must match `cap:[a-z0-9][a-z0-9._-]*`"))
        };
    }
    CAPABILITY_SHORT_FORMS
        .iter()
        .find(|(short, _)| *short == raw)
        .map(|(_, canonical)| (*canonical).to_owned())
        .ok_or_else(|| {
            let known: Vec<&str> = CAPABILITY_SHORT_FORMS.iter().map(|(short, _)| *short).collect();
            format!(
                "unknown capability `{raw}`: write `cap:<name>` or one of {}",
                known.join(", ")
            )
        })
}

/// RFC 9110 token: one or more `tchar`.
fn is_http_token(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_route(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path.contains(['?', '#']) {
        return Err("must not contain a query string or fragment");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    for segment in route_segments(path) {
        if segment.is_empty() {
            return Err("must not contain empty segments");
        }
        if segment == ":" {
            return Err("has a `:` parameter segment without a name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
