//! `ext-runner new`: a new extension project from the templates in
//! `crates/runner/templates/` (`common/` for both languages, then `rust/` or
//! `ts/`), embedded in the binary with `include_str!`.
//!
//! Templates use `{{name}}`-style placeholders ([`render`]). The project
//! depends on the guest SDK of the checkout this binary was built from
//! (neither SDK is on a public registry), or on `--sdk-path`. The directory
//! appears whole or not at all: files are written to a staging directory
//! beside it, which is then renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The language of an extension project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `ext-sdk` crate, built for `wasm32-wasip2`.
    Rust,
    /// TypeScript with `@ext-runner/sdk`, built by its `ext-build`.
    Ts,
}

impl Lang {
    /// The language of the project in `dir`: `Cargo.toml` is Rust,
    /// `package.json` TypeScript.
    pub fn detect(dir: &Path) -> Option<Lang> {
        if dir.join("Cargo.toml").is_file() {
            Some(Lang::Rust)
        } else if dir.join("package.json").is_file() {
            Some(Lang::Ts)
        } else {
            None
        }
    }

    /// The manifest's `runtime` tag for this language.
    fn runtime(self) -> &'static str {
        match self {
            Lang::Rust => "wasm-rust@1",
            Lang::Ts => "wasm-js@1",
        }
    }
}

/// A template file: its path in the new project and its text.
type Template = (&'static str, &'static str);

const COMMON: &[Template] = &[
    ("manifest.json", include_str!("../templates/common/manifest.json")),
    ("ui/index.html", include_str!("../templates/common/ui/index.html")),
];

const RUST: &[Template] = &[
    // `.in`: a `Cargo.toml` here would make the templates a package of
    // their own to Cargo (and a `package.json` one to npm).
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.in")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("README.md", include_str!("../templates/rust/README.md")),
    // Stored without the dot so that it does not apply to the templates themselves.
    (".gitignore", include_str!("../templates/rust/gitignore")),
];

const TS: &[Template] = &[
    ("package.json", include_str!("../templates/ts/package.json.in")),
    ("tsconfig.json", include_str!("../templates/ts/tsconfig.json")),
    ("src/index.ts", include_str!("../templates/ts/src/index.ts")),
    ("test/index.test.ts", include_str!("../templates/ts/test/index.test.ts")),
    ("README.md", include_str!("../templates/ts/README.md")),
    (".gitignore", include_str!("../templates/ts/gitignore")),
];

/// The lock file of `examples/hello`, which has the same dependencies as the
/// Rust template: a new project starts from the versions this repository
/// builds and tests (and builds offline when they are in Cargo's cache).
const EXAMPLE_CARGO_LOCK: &str = include_str!("../../../examples/hello/Cargo.lock");

/// The example's own entry in [`EXAMPLE_CARGO_LOCK`], renamed for the new crate.
const EXAMPLE_LOCK_ENTRY: &str = "name = \"hello\"\nversion = \"1.0.0\"\n";

/// Publisher prefix of a name given without dots (`hello` → `com.example.hello`).
pub const DEFAULT_NAME_PREFIX: &str = "com.example.";

/// What `new` is asked to make.
#[derive(Debug, Clone)]
pub struct NewArgs {
    /// The directory name and, with [`DEFAULT_NAME_PREFIX`] when it has no
    /// dot, the extension's manifest name.
    pub name: String,
    pub lang: Lang,
    /// Where to create the directory.
    pub parent: PathBuf,
    /// The SDK to depend on, instead of the one this binary was built beside.
    pub sdk_path: Option<PathBuf>,
}

/// What `new` made.
#[derive(Debug)]
pub struct Created {
    /// The new project directory.
    pub dir: PathBuf,
    /// The manifest's `name`.
    pub manifest_name: String,
    /// The SDK the project depends on (absolute).
    pub sdk_path: PathBuf,
    /// The files written, relative to `dir`, in template order.
    pub files: Vec<&'static str>,
    /// Things to do before the first build (e.g. an SDK not built yet).
    pub notes: Vec<String>,
}

/// Create the project `args.parent/args.name` from the templates.
///
/// # Errors
/// An invalid name (with the rule it breaks), a directory that exists and
/// is not empty, an SDK that is not where it should be, or an I/O failure;
/// each named. Nothing is left behind on failure.
pub fn new_project(args: &NewArgs) -> anyhow::Result<Created> {
    let manifest_name = manifest_name(&args.name)?;
    let sdk_path = sdk_path(args.lang, args.sdk_path.as_deref())?;
    let dir = match args.parent.as_os_str() == "." {
        true => PathBuf::from(&args.name),
        false => args.parent.join(&args.name),
    };
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; `new` never overwrites: choose another name or --dir",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is not a directory", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    std::fs::create_dir_all(&args.parent).with_context(|| format!("creating {}", args.parent.display()))?;

    let crate_name = package_name(&args.name);
    let sdk_text = quoted_path(&sdk_path)?;
    let vars = [
        ("name", manifest_name.as_str()),
        ("dir", args.name.as_str()),
        ("crate", crate_name.as_str()),
        ("lib", &crate_name.replace('-', "_")),
        ("runtime", args.lang.runtime()),
        ("sdk_path", sdk_text.as_str()),
    ];
    let mut files: Vec<(&'static str, String)> = COMMON
        .iter()
        .chain(match args.lang {
            Lang::Rust => RUST,
            Lang::Ts => TS,
        })
        .map(|(path, text)| (*path, render(text, &vars)))
        .collect();
    if args.lang == Lang::Rust {
        let lock = EXAMPLE_CARGO_LOCK.replacen(
            EXAMPLE_LOCK_ENTRY,
            &format!("name = \"{crate_name}\"\nversion = \"0.1.0\"\n"),
            1,
        );
        files.push(("Cargo.lock", lock));
    }

    // Stage beside the target (same file system), then rename into place:
    // the project appears whole, and a failure leaves nothing.
    let staging = tempfile::Builder::new()
        .prefix(".ext-runner-new-")
        .tempdir_in(&args.parent)
        .with_context(|| format!("creating a staging directory in {}", args.parent.display()))?;
    for (path, text) in &files {
        let target = staging.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        crate::cli::files::write_new_file(&target, text.as_bytes(), 0o644)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Temporary directories are private (0700); a project is not.
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", staging.path().display()))?;
    }
    // rename(2) replaces an empty directory and refuses a non-empty one, so
    // a directory filled since the check above is not overwritten either.
    std::fs::rename(staging.path(), &dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = staging.keep();

    let mut notes = Vec::new();
    if args.lang == Lang::Ts && !sdk_path.join("dist/index.js").is_file() {
        notes.push(format!(
            "the TypeScript SDK at {} is not built yet: run `npm ci && npm run build` there \
             (scripts/build-example-ts does it) before `npm install`",
            sdk_path.display()
        ));
    }
    Ok(Created {
        dir,
        manifest_name,
        sdk_path,
        files: files.iter().map(|(path, _)| *path).collect(),
        notes,
    })
}

/// The manifest name for `name`: itself when it has a dot (a reverse-domain
/// name), else `com.example.<name>`; checked by the manifest's own rules.
///
/// # Errors
/// The rule the name breaks, as the manifest validator words it.
pub fn manifest_name(name: &str) -> anyhow::Result<String> {
    let full = if name.contains('.') {
        name.to_owned()
    } else {
        format!("{DEFAULT_NAME_PREFIX}{name}")
    };
    let probe = serde_json::json!({"name": full, "version": "0.1.0"});
    if let Err(errors) = ext_bundle::Manifest::from_json_value(&probe)
        && let Some(error) = errors.iter().find(|e| e.field == "name")
    {
        bail!(
            "`{name}` is not a valid extension name: {} (use lower-case letters, digits, '-' and '_', \
             like `hello-world`, or a reverse-domain name like `com.acme.hello-world`)",
            error.reason
        );
    }
    Ok(full)
}

/// A Cargo and npm package name for the project: the name's last segment,
/// prefixed with `ext-` where it would not be a valid or allowed crate name.
fn package_name(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "alloc",
        "core",
        "proc_macro",
        "proc-macro",
        "std",
        "test",
        "as",
        "async",
        "await",
        "break",
        "const",
        "continue",
        "crate",
        "dyn",
        "else",
        "enum",
        "extern",
        "false",
        "fn",
        "for",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "match",
        "mod",
        "move",
        "mut",
        "pub",
        "ref",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "trait",
        "true",
        "type",
        "unsafe",
        "use",
        "where",
        "while",
    ];
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.starts_with(|c: char| c.is_ascii_lowercase()) && !RESERVED.contains(&last) {
        last.to_owned()
    } else {
        format!("ext-{last}")
    }
}

/// The SDK directory for `lang`: `explicit`, else the one beside the source
/// this binary was built from (`crates/sdk` or `sdk/ts`); absolute.
///
/// # Errors
/// The directory does not hold that SDK: says where it looked and how to
/// point elsewhere.
pub fn sdk_path(lang: Lang, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (default, manifest, package, what) = match lang {
        Lang::Rust => (
            built_from.join("../sdk"),
            "Cargo.toml",
            "ext-sdk",
            "the Rust SDK (crates/sdk)",
        ),
        Lang::Ts => (
            built_from.join("../../sdk/ts"),
            "package.json",
            "@ext-runner/sdk",
            "the TypeScript SDK (sdk/ts)",
        ),
    };
    let dir = explicit.map_or(default, Path::to_path_buf);
    let found = std::fs::read_to_string(dir.join(manifest))
        .ok()
        .is_some_and(|text| names_package(lang, &text, package));
    if !found {
        match explicit {
            Some(_) => bail!(
                "--sdk-path {}: no {manifest} of `{package}` there; point it at {what} of an ext-runner checkout",
                dir.display()
            ),
            None => bail!(
                "{what} is not at {} (beside the source this ext-runner was built from); \
                 pass --sdk-path with its directory in an ext-runner checkout",
                dir.display()
            ),
        }
    }
    std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))
}

/// Whether a `Cargo.toml` / `package.json` text is that of package `name`.
fn names_package(lang: Lang, text: &str, name: &str) -> bool {
    match lang {
        Lang::Rust => toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("package")?.get("name")?.as_str().map(|n| n == name))
            .unwrap_or(false),
        Lang::Ts => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v["name"] == name),
    }
}

/// `path` for a double-quoted TOML or JSON string (both escape `\` and `"`
/// the same way).
///
/// # Errors
/// A path that is not UTF-8 or holds control characters.
fn quoted_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", path.display()))?;
    if text.chars().any(char::is_control) {
        bail!("the SDK path {text:?} contains control characters");
    }
    Ok(text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Replace each `{{key}}` of `vars` in `template`; anything else is kept.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            vars.iter()
                .find(|(key, _)| *key == &after[..end])
                .map(|(_, v)| (end, v))
        });
        match value {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_known_keys_only() {
        let vars = [("name", "com.example.x"), ("dir", "x")];
        assert_eq!(render("{{name}}/{{dir}}", &vars), "com.example.x/x");
        assert_eq!(render("{{other}} {{name", &vars), "{{other}} {{name");
    }

    #[test]
    fn every_placeholder_in_the_templates_is_known() {
        let keys = ["name", "dir", "crate", "lib", "runtime", "sdk_path"];
        for (path, text) in COMMON.iter().chain(RUST).chain(TS) {
            let mut rest = *text;
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let end = after.find("}}").unwrap_or_else(|| panic!("{path}: unclosed `{{{{`"));
                assert!(
                    keys.contains(&&after[..end]),
                    "{path}: unknown placeholder {}",
                    &after[..end]
                );
                rest = &after[end + 2..];
            }
        }
    }

    #[test]
    fn names_follow_the_manifest_rules() {
        assert_eq!(manifest_name("hello-rs").unwrap(), "com.example.hello-rs");
        assert_eq!(manifest_name("com.acme.hello").unwrap(), "com.acme.hello");
        for (bad, why) in [
            ("Hello", "segment `Hello` may contain only"),
            ("a/b", "segment `a/b` may contain only"),
            ("x..y", "has an empty segment"),
            ("", "has an empty segment"),
        ] {
            let error = manifest_name(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains("is not a valid extension name"), "{error}");
        }
    }

    #[test]
    fn package_names_are_valid_crate_names() {
        assert_eq!(package_name("hello-rs"), "hello-rs");
        assert_eq!(package_name("com.acme.tickets"), "tickets");
        assert_eq!(package_name("com.acme.9lives"), "ext-9lives");
        assert_eq!(package_name("test"), "ext-test");
        assert_eq!(package_name("_x"), "ext-_x");
    }

    #[test]
    fn the_example_lock_has_the_entry_new_projects_rename() {
        assert!(EXAMPLE_CARGO_LOCK.contains(EXAMPLE_LOCK_ENTRY));
    }

    #[test]
    fn the_sdks_are_found_beside_the_source() {
        assert!(sdk_path(Lang::Rust, None).unwrap().join("Cargo.toml").is_file());
        assert!(sdk_path(Lang::Ts, None).unwrap().join("package.json").is_file());
        let wrong = sdk_path(Lang::Rust, Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(wrong.to_string().contains("--sdk-path /nonexistent"), "{wrong}");
    }
}
