//! The authoring and operations commands: `pack` (with its component,
//! import and world checks), `publish`, `compile`, `inspect`, `exec`,
//! `keygen`, `sign`, `verify` and `secrets keygen` / `seal`. Each returns
//! text for the user or an error whose message names the file or field at
//! fault; `main.rs` prints it and sets the exit code. (`new` is in
//! `scaffold`, `dev` in `devloop`, `serve` in `main.rs`.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use ext_bundle::{Digest, UnpackLimits};

use crate::config::Config;
use crate::envelope::Envelope;
use crate::execute::{GuestResponse, Runner};
use crate::store::StorageSettings;
use crate::store::object::{BundleObjects, PutOutcome};

/// Pack a bundle directory into a deterministic `bundle.tar.zst`.
///
/// # Errors
/// Invalid manifest or missing files, named; unwritable output.
pub fn pack(dir: &Path, out: &Path) -> anyhow::Result<Digest> {
    let archive = pack_dir(dir)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::engine::write_atomically(out, &archive).with_context(|| format!("writing {}", out.display()))?;
    Ok(Digest::of(&archive))
}

/// [`ext_bundle::pack_dir`], with the build command to run when a component
/// the manifest names is missing.
///
/// # Errors
/// As `pack_dir`, the directory named.
pub fn pack_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let archive = ext_bundle::pack_dir(dir)
        .map_err(|e| match (&e, build_hint(dir)) {
            (ext_bundle::PackError::MissingFile { .. }, Some(hint)) => anyhow::anyhow!("{e}; {hint}"),
            _ => anyhow::Error::new(e),
        })
        .with_context(|| format!("packing {}", dir.display()))?;
    check_components(dir).with_context(|| format!("packing {}", dir.display()))?;
    Ok(archive)
}

/// What the runner checks at load, checked before a bundle leaves the
/// author's machine (A-21): [`check_worlds`] (first: a component declared
/// for the wrong world also imports what that world lacks, and the world is
/// the helpful message), then [`check_imports`].
///
/// # Errors
/// The first component the runner would refuse, named with the reason.
pub fn check_components(dir: &Path) -> anyhow::Result<()> {
    check_worlds(dir)?;
    check_imports(dir)
}

/// Every component the manifest names must be a component whose imports
/// this runner provides to its world: the same rule
/// ([`crate::host::is_supported_import`]) the runner applies at load, read
/// from the import section without compiling (a JavaScript component takes
/// tens of seconds to compile). A component the runner would refuse is
/// refused here, so it is never published.
///
/// # Errors
/// The component and every import the runner does not provide, or why it
/// is not a readable component.
pub fn check_imports(dir: &Path) -> anyhow::Result<()> {
    let manifest_path = dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME);
    let manifest = ext_bundle::Manifest::from_slice(&std::fs::read(&manifest_path)?)?;
    for (_, component) in manifest.required_files() {
        let path = dir.join(&component);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let names = component_names(&wasm).map_err(|why| anyhow::anyhow!("{component}: {why}"))?;
        let world = manifest.component_world(&component);
        let mut unsupported: Vec<&str> = names
            .imports
            .iter()
            .map(String::as_str)
            .filter(|name| !crate::host::is_supported_import(name, world))
            .collect();
        unsupported.sort_unstable();
        if !unsupported.is_empty() {
            bail!(
                "{component}: imports interfaces this runner does not provide to world `{}`: {} \
                 (the runner refuses it with `unsupported_import`)",
                world.as_str(),
                unsupported.join(", ")
            );
        }
    }
    Ok(())
}

/// Every component the manifest names must export what its endpoints'
/// `world` requires: `handler` for `alga:extension/runner`,
/// `wasi:http/incoming-handler` for `wasi:http/proxy`. A component that
/// cannot be read is left to the runner's load-time error.
///
/// # Errors
/// The component, the world its endpoints declare, and what it exports.
pub fn check_worlds(dir: &Path) -> anyhow::Result<()> {
    let manifest_path = dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME);
    let manifest = ext_bundle::Manifest::from_slice(&std::fs::read(&manifest_path)?)?;
    for (_, component) in manifest.required_files() {
        let Ok(names) = std::fs::read(dir.join(&component)).map(|wasm| component_names(&wasm)) else {
            continue;
        };
        let Ok(names) = names else { continue };
        let world = manifest.component_world(&component);
        let is_proxy_export = |name: &String| name.starts_with("wasi:http/incoming-handler@0.2.");
        let (exported, needed, hint) = match world {
            ext_bundle::World::Runner => (
                names.exports.iter().any(|name| name == "handler"),
                "`handler`",
                "; if it is a wasi:http/proxy component, set \"world\": \"wasi:http/proxy\" on the endpoints that name it",
            ),
            ext_bundle::World::Proxy => (
                names.exports.iter().any(is_proxy_export),
                "`wasi:http/incoming-handler@0.2.x`",
                "",
            ),
        };
        if !exported {
            let list = if names.exports.is_empty() {
                "nothing".to_string()
            } else {
                names.exports.join(", ")
            };
            bail!(
                "{component}: its endpoints declare world `{}`, which exports {needed}, but the component exports {list}{hint}",
                world.as_str()
            );
        }
    }
    Ok(())
}

/// How the components of the project in `dir` are built, for an error
/// about a missing one; `None` when `dir` is not a Rust or npm project.
pub fn build_hint(dir: &Path) -> Option<String> {
    let shown = dir.display();
    match crate::scaffold::Lang::detect(dir)? {
        crate::scaffold::Lang::Rust => {
            let lib = std::fs::read_to_string(dir.join("Cargo.toml"))
                .ok()
                .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
                .and_then(|t| {
                    let lib = t.get("lib").and_then(|l| l.get("name")).and_then(toml::Value::as_str);
                    let package = t
                        .get("package")
                        .and_then(|p| p.get("name"))
                        .and_then(toml::Value::as_str);
                    lib.or(package).map(|n| n.replace('-', "_"))
                })
                .unwrap_or_else(|| "<crate>".to_string());
            Some(format!(
                "build it: `ext-runner dev {shown}` builds and serves it; by hand, `cargo build --release --target wasm32-wasip2` \
                 in {shown}, then copy target/wasm32-wasip2/release/{lib}.wasm to that path"
            ))
        }
        crate::scaffold::Lang::Ts => Some(format!(
            "build it: `npm run build` in {shown} (`ext-runner dev {shown}` builds and serves it)"
        )),
    }
}

/// A capability interface a component imports whose capability the
/// manifest does not declare: its calls would all answer `denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeclaredImport {
    /// The component, as a bundle path (`dist/main.wasm`).
    pub component: String,
    /// The imported interface (`alga:extension/storage`).
    pub interface: &'static str,
    /// The capability to declare (`cap:storage.kv`).
    pub capability: &'static str,
}

/// Every component of the extension in `dir` (entry and handlers) that
/// imports a capability interface its manifest does not declare.
///
/// # Errors
/// An invalid manifest, or a component that is missing or not a component.
pub fn undeclared_capabilities(dir: &Path) -> anyhow::Result<Vec<UndeclaredImport>> {
    let manifest_path = dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME);
    let bytes = std::fs::read(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = ext_bundle::Manifest::from_slice(&bytes)?;
    let mut found = Vec::new();
    for (_, component) in manifest.required_files() {
        let path = dir.join(&component);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let imports = component_imports(&wasm).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
        // The interfaces a capability gates (the registry's table), minus
        // the always-granted ones, which need no declaration.
        let gated = crate::host::registry::CAPABILITIES.iter().filter(|c| !c.always_granted);
        for capability in gated {
            for interface in capability.interfaces {
                let imported = imports
                    .iter()
                    .any(|name| name.split_once('@').map_or(name.as_str(), |(base, _)| base) == *interface);
                if imported && !manifest.capabilities.iter().any(|c| c == capability.name) {
                    found.push(UndeclaredImport {
                        component: component.clone(),
                        interface,
                        capability: capability.name,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// [`undeclared_capabilities`] as warning lines for `pack` and `dev`. A
/// JavaScript component imports every interface of its world whatever the
/// code calls, so it gets one line per component instead of one per import.
pub fn capability_warnings(dir: &Path) -> Vec<String> {
    let found = match undeclared_capabilities(dir) {
        Ok(found) => found,
        Err(e) => return vec![format!("could not check the components' imports: {e:#}")],
    };
    let javascript = crate::scaffold::Lang::detect(dir) == Some(crate::scaffold::Lang::Ts)
        || std::fs::read(dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME))
            .ok()
            .and_then(|bytes| ext_bundle::Manifest::from_slice(&bytes).ok())
            .and_then(|m| m.runtime)
            .is_some_and(|r| r.starts_with("wasm-js"));
    if javascript {
        let mut components: Vec<&str> = found.iter().map(|f| f.component.as_str()).collect();
        components.dedup();
        return components
            .into_iter()
            .map(|component| {
                let of = |f: &&UndeclaredImport| f.component == component;
                let interfaces: Vec<&str> = found.iter().filter(of).map(|f| f.interface).collect();
                let capabilities: Vec<&str> = found.iter().filter(of).map(|f| f.capability).collect();
                format!(
                    "{component} imports {} (a JavaScript component imports every interface of its world); \
                     calls to them answer `denied` unless manifest.json's `capabilities` declares {}: \
                     add those your code uses",
                    interfaces.join(", "),
                    capabilities.join(", ")
                )
            })
            .collect();
    }
    found
        .iter()
        .map(|f| {
            format!(
                "{} imports `{}` but manifest.json does not declare `{}`: add \"{}\" to `capabilities` \
                 (until then every call answers `denied`)",
                f.component, f.interface, f.capability, f.capability
            )
        })
        .collect()
}

/// The names of a component's imports other than types
/// (`alga:extension/storage`, `wasi:cli/stdout@0.2.6`, …), read from its
/// top-level import sections without compiling it: a JavaScript component
/// takes tens of seconds to compile, and `pack` should not.
///
/// # Errors
/// Bytes that are not a component binary, or a malformed import section.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    component_names(bytes).map(|names| names.imports)
}

/// A component's top-level import and export names (types excluded).
#[derive(Debug, Default)]
pub struct ComponentNames {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// [`ComponentNames`] of a component binary, read without compiling it.
///
/// # Errors
/// As [`component_imports`].
pub fn component_names(bytes: &[u8]) -> Result<ComponentNames, String> {
    use wasmparser::{ComponentExternalKind, ComponentTypeRef, Encoding, Parser, Payload};
    let mut names = ComponentNames::default();
    // Nested modules and components are parsed inline between their
    // section and their `End`; only depth 1 (the component itself) counts.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a readable WebAssembly component: {e}"))? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(
                        "a core WebAssembly module, not a component (build for wasm32-wasip2, or componentize the module)"
                            .into(),
                    );
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|e| format!("not a readable WebAssembly component: {e}"))?;
                    // Type imports (the world's `execute-request`) carry no
                    // functionality; Wasmtime does not list them either.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        names.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|e| format!("not a readable WebAssembly component: {e}"))?;
                    if export.kind != ComponentExternalKind::Type {
                        names.exports.push(export.name.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Arguments of `publish`.
#[derive(Debug, Clone, Default)]
pub struct PublishArgs {
    /// The `bundle.tar.zst` to publish.
    pub bundle: PathBuf,
    /// Store URL (`file://`, `s3://`; `http(s)://` stores are read-only).
    pub store: String,
    /// Detached signature (`bundle.sig`), uploaded beside the bundle.
    pub signature: Option<PathBuf>,
    /// Certificate chain (`bundle.pem`) of a certificate signature.
    pub certificates: Option<PathBuf>,
    /// Trust bundle to verify the signature against (`--trust`, else
    /// `SIGNING_TRUST_BUNDLE`): a PEM file path or inline PEM.
    pub trust: Option<String>,
    /// Value of `{tenant}` in the key layout.
    pub tenant: Option<String>,
    /// Value of `{extension}` in the key layout (default: the manifest's name).
    pub extension: Option<String>,
    /// Publish without a verified signature.
    pub allow_unsigned: bool,
}

/// What `publish` did.
#[derive(Debug)]
pub struct Published {
    pub digest: Digest,
    /// Who signed it, when the signature was verified.
    pub signer: Option<ext_bundle::Signer>,
    /// Every object written or found, in upload order (the bundle last).
    pub objects: Vec<(String, PutOutcome)>,
}

impl Published {
    /// Whether the bundle itself was newly written.
    pub fn bundle_created(&self) -> bool {
        self.objects
            .last()
            .is_some_and(|(_, outcome)| *outcome == PutOutcome::Created)
    }
}

/// Validate a bundle, check its signature, and upload it with its
/// signature, certificate chain and `manifest.json` under the store's key
/// layout. Never overwrites: an object at the same key with other bytes is
/// an error, the same bytes count as already published.
///
/// The files beside the bundle go up first and the bundle last, so a runner
/// that sees the bundle also sees its signature. S3 settings come from the
/// `BUNDLE_STORAGE_*` variables in `env`, as for `serve`. With `progress`, a
/// progress bar on stderr follows large uploads.
///
/// # Errors
/// Invalid bundle; unsigned or badly signed without `--allow-unsigned`; a
/// read-only or unreachable store; a conflicting object (named).
pub async fn publish(args: &PublishArgs, env: &HashMap<String, String>, progress: bool) -> anyhow::Result<Published> {
    let bundle = &args.bundle;
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    // Unpacking validates exactly as the runner will, and yields the
    // manifest's own bytes to publish beside the archive.
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    ext_bundle::unpack(&archive, work.path(), &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let manifest_bytes = std::fs::read(work.path().join("manifest.json")).context("reading manifest.json")?;
    let manifest = ext_bundle::Manifest::from_slice(&manifest_bytes)
        .with_context(|| format!("{}: manifest.json", bundle.display()))?;
    // A-21: what the runner would refuse at load is not published.
    check_components(work.path()).with_context(|| format!("{} is not published", bundle.display()))?;
    drop(work);

    let read_text = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let signature = args.signature.as_deref().map(read_text).transpose()?;
    let certificates = args.certificates.as_deref().map(read_text).transpose()?;
    if certificates.is_some() && signature.is_none() {
        bail!("--certs needs --sig: a certificate chain only travels with the signature it vouches for");
    }
    let digest = Digest::of(&archive);
    let signer = match (&signature, &args.trust) {
        (Some(signature), Some(trust)) => {
            let trust = ext_bundle::TrustBundle::load(trust).context("--trust/SIGNING_TRUST_BUNDLE")?;
            let signer = ext_bundle::verify(
                &archive,
                signature,
                certificates.as_deref(),
                &trust,
                std::time::SystemTime::now(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} is not published: its signature does not verify: {e} [{}]",
                    bundle.display(),
                    e.code()
                )
            })?;
            Some(signer)
        }
        (Some(_), None) if !args.allow_unsigned => bail!(
            "{} is not published: no trust bundle to verify its signature against (pass --trust or set SIGNING_TRUST_BUNDLE; --allow-unsigned uploads it unchecked)",
            bundle.display()
        ),
        (None, _) if !args.allow_unsigned => bail!(
            "{} is not published: it is unsigned (sign it with `ext-runner sign` and pass --sig, or pass --allow-unsigned)",
            bundle.display()
        ),
        _ => None,
    };

    let settings = StorageSettings::load(&args.store, env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let layout = settings.layout.template();
    let tenant = match (&args.tenant, layout.contains("{tenant}")) {
        (Some(tenant), _) => tenant.clone(),
        (None, true) => bail!("the key layout `{layout}` contains {{tenant}}: pass --tenant"),
        (None, false) => String::new(),
    };
    let extension = args.extension.clone().unwrap_or_else(|| manifest.name.clone());
    let objects = BundleObjects::open(&settings).map_err(|why| anyhow::anyhow!("--store: {why}"))?;
    if objects.is_read_only() {
        bail!(
            "--store {}: http(s) stores are read-only; publish to the s3:// or file:// store behind it",
            args.store
        );
    }
    let keys = objects.keys(&digest, &tenant, &extension);

    let mut uploads: Vec<(String, Bytes)> = vec![(keys.manifest.clone(), Bytes::from(manifest_bytes))];
    if let Some(pem) = certificates {
        uploads.push((keys.certificates.clone(), Bytes::from(pem)));
    }
    if let Some(signature) = signature {
        uploads.push((keys.signature.clone(), Bytes::from(signature)));
    }
    uploads.push((keys.bundle.clone(), Bytes::from(archive)));

    let mut done = Vec::new();
    for (key, bytes) in uploads {
        let bar = (progress && bytes.len() >= PROGRESS_BAR_MIN_BYTES).then(|| upload_bar(&key, bytes.len()));
        let report = |sent: u64| {
            if let Some(bar) = &bar {
                bar.set_position(sent);
            }
        };
        let outcome = objects
            .put_if_absent_with_progress(&key, bytes, &report)
            .await
            .with_context(|| format!("publishing to {}", objects))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        done.push((key, outcome));
    }
    Ok(Published {
        digest,
        signer,
        objects: done,
    })
}

/// Uploads smaller than this finish too fast for a progress bar to help.
pub const PROGRESS_BAR_MIN_BYTES: usize = 4 * 1024 * 1024;

fn upload_bar(key: &str, len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(key.rsplit('/').next().unwrap_or(key).to_string());
    bar
}

/// Add this engine's precompiled artifact of the bundle's entry component
/// (`precompiled/<arch>-<os>.cwasm` plus its engine tag) and write the new
/// archive. The engine is configured from the environment exactly as
/// `serve` would be (same limits → same compatibility tag).
///
/// # Errors
/// Invalid bundle, a component that does not compile, unwritable output.
pub fn compile(bundle: &Path, out: &Path) -> anyhow::Result<(Digest, String)> {
    compile_with_env(bundle, out, std::env::vars().collect())
}

/// [`compile`] with the engine configured from `env` instead of the
/// process environment.
///
/// # Errors
/// As [`compile`].
pub fn compile_with_env(
    bundle: &Path,
    out: &Path,
    mut env: std::collections::HashMap<String, String>,
) -> anyhow::Result<(Digest, String)> {
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let files = work.path().join("files");
    ext_bundle::unpack(&archive, &files, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let manifest_bytes = std::fs::read(files.join("manifest.json")).context("reading manifest.json")?;
    let manifest = ext_bundle::Manifest::from_slice(&manifest_bytes)
        .with_context(|| format!("{}: manifest.json", bundle.display()))?;
    let wasm = std::fs::read(files.join(&manifest.entry))
        .with_context(|| format!("{}: entry `{}`", bundle.display(), manifest.entry))?;

    env.insert("RUNNER_DATA_DIR".into(), work.path().join("data").display().to_string());
    env.remove("RUNNER_CACHE_DIR");
    env.entry("RUNNER_SERVICE_TOKEN".into())
        .or_insert_with(|| "compile-only-token-0000".into());
    let config = Config::load(&env, &crate::config::Overrides::default())?;
    let runtime = crate::engine::Runtime::new(
        crate::engine::EngineLimits::new(&config.engine, &config.limits)?,
        &config.cache_dir,
        Arc::new(crate::engine::Unbudgeted),
        None,
    )?;
    let artifact = runtime
        .precompile(&manifest.entry, &wasm, manifest.component_world(&manifest.entry))
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code.as_str(), f.message))?;
    let (artifact_path, tag_path) = crate::engine::precompiled_paths();
    std::fs::create_dir_all(files.join("precompiled"))?;
    std::fs::write(files.join(&artifact_path), artifact)?;
    std::fs::write(files.join(&tag_path), runtime.engine_tag())?;
    let packed = ext_bundle::pack_dir(&files).context("packing the compiled bundle")?;
    crate::engine::write_atomically(out, &packed).with_context(|| format!("writing {}", out.display()))?;
    Ok((Digest::of(&packed), artifact_path))
}

/// Describe a bundle: hash, manifest, endpoints, capabilities and files.
///
/// # Errors
/// Unreadable or invalid bundle.
pub fn inspect(bundle: &Path) -> anyhow::Result<String> {
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let (files, manifest) = ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "content_hash: {}", Digest::of(&archive));
    let _ = writeln!(out, "size:         {} bytes (compressed)", archive.len());
    let _ = writeln!(out, "name:         {}", manifest.name);
    let _ = writeln!(out, "version:      {}", manifest.version);
    let _ = writeln!(out, "entry:        {}", manifest.entry);
    let _ = writeln!(
        out,
        "capabilities: {}",
        if manifest.capabilities.is_empty() {
            "(none)".to_string()
        } else {
            manifest.capabilities.join(", ")
        }
    );
    let _ = writeln!(out, "endpoints:");
    if manifest.endpoints.is_empty() {
        let _ = writeln!(out, "  (none: every request goes to {})", manifest.entry);
    }
    for e in &manifest.endpoints {
        let _ = writeln!(
            out,
            "  {:<7} {:<30} -> {}",
            e.method,
            e.path,
            manifest.handler_component(e)
        );
    }
    let _ = writeln!(out, "files:");
    for (path, meta) in &files {
        let _ = writeln!(out, "  {:>10}  {}  {path}", meta.size, meta.sha256);
    }
    Ok(out)
}

/// Arguments of `exec`.
pub struct ExecArgs {
    pub target: PathBuf,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub tenant: String,
    pub timeout_ms: Option<u64>,
}

/// Run one handler locally, no server: pack the directory (or take the
/// archive), publish it to a throwaway store and execute once.
///
/// # Errors
/// Any packing, loading or execution failure, with its code.
pub async fn exec(args: ExecArgs) -> anyhow::Result<GuestResponse> {
    let archive = if args.target.is_dir() {
        ext_bundle::pack_dir(&args.target).with_context(|| format!("packing {}", args.target.display()))?
    } else {
        std::fs::read(&args.target).with_context(|| format!("reading {}", args.target.display()))?
    };
    let (_, manifest) = ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", args.target.display()))?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = Config::for_dir(work.path());
    // A local run of the author's own files: there is no signature to check.
    config.bundles.signing_required = false;
    let runner = Arc::new(Runner::new(config)?);
    let digest = Digest::of(&archive);
    let keys = runner.bundle_objects().keys(&digest, &args.tenant, &manifest.name);
    runner
        .bundle_objects()
        .put_if_absent(&keys.bundle, archive.into())
        .await
        .context("storing the bundle in the temporary store")?;
    let envelope_json = serde_json::json!({
        "context": {"tenant_id": args.tenant, "extension_id": manifest.name, "content_hash": digest.to_string()},
        "http": {
            "method": args.method,
            "path": args.path,
            "headers": args.headers.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
            "body_b64": args.body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        },
        "limits": {"timeout_ms": args.timeout_ms},
    });
    let envelope = Envelope::parse(
        envelope_json.to_string().as_bytes(),
        runner.config().limits.max_request_bytes,
    )
    .map_err(|f| anyhow::anyhow!("{}: {}", f.code.as_str(), f.message))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match runner.execute(&envelope, &request_id).await {
        Ok(response) => Ok(response),
        Err(f) => bail!("{} ({}): {}", f.code.as_str(), f.code.status().as_u16(), f.message),
    }
}

/// Where `keygen` puts the public key: `key.pem` → `key.pub.pem`, any other
/// name gets `.pub.pem` appended.
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// Generate a signing key: the private key at `out` (PKCS#8 PEM, mode
/// 0600, never overwriting a file) and the public key beside it (see
/// [`public_key_path`]). Returns the public key's path and fingerprint.
///
/// # Errors
/// Either file already exists, or cannot be written; both named.
pub fn keygen(out: &Path, algorithm: ext_bundle::KeyAlgorithm) -> anyhow::Result<(PathBuf, Digest)> {
    let public = public_key_path(out);
    for path in [out, public.as_path()] {
        if path.symlink_metadata().is_ok() {
            bail!("{} already exists; keygen never overwrites a key", path.display());
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = ext_bundle::SigningKey::generate(algorithm);
    write_new_file(out, key.to_pkcs8_pem().as_bytes(), 0o600)?;
    write_new_file(&public, key.public_key_pem().as_bytes(), 0o644)?;
    Ok((public, key.fingerprint()))
}

/// Create `path` (failing if it exists) with `mode` on Unix and write it.
///
/// # Errors
/// The path exists or cannot be written, named.
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// What `sign` wrote.
#[derive(Debug)]
pub struct Signed {
    /// The signature file (base64, as `openssl dgst -sign | base64 -w0`).
    pub signature: PathBuf,
    /// `bundle.pem` beside it, when signed with a certificate.
    pub certificates: Option<PathBuf>,
    /// Who signed: the key fingerprint or the certificate subject.
    pub signer: ext_bundle::Signer,
}

/// Sign the archive bytes of `bundle` with the key in `key`, writing the
/// base64 signature to `out`. With `cert` (and optionally `chain`), also
/// writes `bundle.pem` (leaf, then intermediates) beside `out`, after
/// checking that the leaf certifies this key.
///
/// # Errors
/// Unreadable bundle or key, a certificate that does not match the key, or
/// unwritable output; each named.
pub fn sign(
    bundle: &Path,
    key: &Path,
    cert: Option<&Path>,
    chain: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Signed> {
    if chain.is_some() && cert.is_none() {
        bail!("--chain needs --cert (the leaf certificate of the signing key)");
    }
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let key = ext_bundle::SigningKey::load(key)?;
    let read_pem = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let certificates = match cert {
        None => None,
        Some(cert) => {
            let leaf = read_pem(cert)?;
            let chain_text = chain.map(read_pem).transpose()?;
            let files = match chain {
                Some(chain) => format!("--cert {} --chain {}", cert.display(), chain.display()),
                None => format!("--cert {}", cert.display()),
            };
            let built = ext_bundle::signature::certificate_bundle(&leaf, chain_text.as_deref(), &key.public_key())
                .with_context(|| files)?;
            Some(built)
        }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // `write_atomically` syncs the parent directory, which a bare file name
    // (`--out bundle.sig`) does not spell out.
    let out = &if out.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        Path::new(".").join(out)
    } else {
        out.to_path_buf()
    };
    let signature = ext_bundle::signature::encode_signature(&key.sign(&archive));
    crate::engine::write_atomically(out, signature.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let (certificates, signer) = match certificates {
        None => (
            None,
            ext_bundle::Signer::Key {
                fingerprint: key.fingerprint(),
            },
        ),
        Some(built) => {
            let path = out.with_file_name("bundle.pem");
            crate::engine::write_atomically(&path, built.pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            (
                Some(path),
                ext_bundle::Signer::Certificate {
                    subject: built.subject,
                    fingerprint: built.fingerprint,
                },
            )
        }
    };
    Ok(Signed {
        signature: out.to_path_buf(),
        certificates,
        signer,
    })
}

/// Verify `sig` (and the certificates in `certs`, if given) over the
/// archive bytes of `bundle` against `trust` (a PEM file, or inline PEM),
/// at the current time.
///
/// # Errors
/// Unreadable files or trust bundle, named; otherwise the precise reason
/// the signature is refused, with its code.
pub fn verify(bundle: &Path, sig: &Path, trust: &str, certs: Option<&Path>) -> anyhow::Result<ext_bundle::Signer> {
    let trust = ext_bundle::TrustBundle::load(trust).context("--trust")?;
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let signature = std::fs::read_to_string(sig).with_context(|| format!("reading {}", sig.display()))?;
    let certs_text = certs
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    ext_bundle::verify(
        &archive,
        &signature,
        certs_text.as_deref(),
        &trust,
        std::time::SystemTime::now(),
    )
    .map_err(|e| anyhow::anyhow!("{} with {}: {e} [{}]", bundle.display(), sig.display(), e.code()))
}

/// A new random 32-byte runner key, base64 (`secrets keygen`).
pub fn secrets_keygen() -> String {
    base64::engine::general_purpose::STANDARD.encode(crate::random_bytes::<32>())
}

/// Seal the JSON object in `input` (or stdin) for (tenant, extension) with
/// the key from `RUNNER_SECRETS_KEY` / `RUNNER_SECRETS_KEY_FILE`; returns the
/// `secret_envelope` JSON. [`secrets_seal_until`] with no expiry.
///
/// # Errors
/// No key, unreadable input, input that is not an object of strings.
pub fn secrets_seal(
    env: &std::collections::HashMap<String, String>,
    tenant: &str,
    extension: &str,
    input: Option<&Path>,
) -> anyhow::Result<String> {
    secrets_seal_until(env, tenant, extension, None, input)
}

/// [`secrets_seal`] with an optional `expires_at` (RFC 3339), written into
/// the envelope and bound into its ciphertext (K-04): the runner refuses the
/// envelope after that time, and refuses it as altered if the field is
/// removed or changed.
///
/// # Errors
/// As [`secrets_seal`], and an `expires_at` that is not an RFC 3339 time.
pub fn secrets_seal_until(
    env: &std::collections::HashMap<String, String>,
    tenant: &str,
    extension: &str,
    expires_at: Option<&str>,
    input: Option<&Path>,
) -> anyhow::Result<String> {
    let key = match (env.get("RUNNER_SECRETS_KEY"), env.get("RUNNER_SECRETS_KEY_FILE")) {
        (Some(text), _) => {
            crate::host::secrets::secrets_key(text).map_err(|why| anyhow::anyhow!("RUNNER_SECRETS_KEY: {why}"))?
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("RUNNER_SECRETS_KEY_FILE: {path}"))?;
            crate::host::secrets::secrets_key(&text)
                .map_err(|why| anyhow::anyhow!("RUNNER_SECRETS_KEY_FILE: {path}: {why}"))?
        }
        (None, None) => {
            bail!("set RUNNER_SECRETS_KEY or RUNNER_SECRETS_KEY_FILE (make one with `ext-runner secrets keygen`)")
        }
    };
    let (text, source) = match input {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
            (text, "standard input".to_string())
        }
    };
    let secrets: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{source}: expected a JSON object of secret name -> string value"))?;
    let sealed = crate::host::secrets::seal(&key, &secrets, tenant, extension, expires_at)
        .map_err(|e| anyhow::anyhow!("--expires-at: {e} (like 2026-12-31T23:59:59Z)"))?;
    let mut envelope = serde_json::json!({"algorithm": "aes-256-gcm", "ciphertext_b64": sealed});
    if let Some(at) = expires_at {
        envelope["expires_at"] = serde_json::json!(at);
    }
    Ok(envelope.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_imports_lists_top_level_import_names() {
        let wasm = wat::parse_str(
            r#"(component
                (import "alga:extension/storage" (instance))
                (type $f (func (param "x" u32)))
                (import "wasi:cli/stdout@0.2.6" (instance (export "f" (func (type 0)))))
                (import "f" (func (type $f)))
                (import "t" (type (sub resource)))
                (component (import "nested:not/top-level" (instance)))
            )"#,
        )
        .unwrap();
        assert_eq!(
            component_imports(&wasm).unwrap(),
            ["alga:extension/storage", "wasi:cli/stdout@0.2.6", "f"]
        );
    }

    #[test]
    fn component_imports_refuses_modules_and_garbage() {
        let module = wat::parse_str("(module)").unwrap();
        assert!(
            component_imports(&module)
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        let garbage = component_imports(b"not wasm").unwrap_err();
        assert!(garbage.contains("not a readable WebAssembly component"), "{garbage}");
        let mut truncated = wat::parse_str(r#"(component (import "a:b/c" (instance)))"#).unwrap();
        truncated.pop();
        let truncated = component_imports(&truncated).unwrap_err();
        assert!(truncated.contains("unexpected end"), "{truncated}");
    }

    #[test]
    fn undeclared_capabilities_name_interface_and_capability() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(
            r#"(component
                (import "alga:extension/storage" (instance))
                (import "alga:extension/http" (instance))
                (import "alga:extension/logging" (instance))
            )"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("dist")).unwrap();
        std::fs::write(dir.path().join("dist/main.wasm"), wasm).unwrap();
        let manifest = |caps: &str| {
            format!(r#"{{"name":"com.test.caps","version":"1.0.0","runtime":"wasm-rust@1","capabilities":{caps}}}"#)
        };
        std::fs::write(dir.path().join("manifest.json"), manifest(r#"["http.fetch"]"#)).unwrap();
        assert_eq!(
            undeclared_capabilities(dir.path()).unwrap(),
            [UndeclaredImport {
                component: "dist/main.wasm".into(),
                interface: "alga:extension/storage",
                capability: "cap:storage.kv",
            }]
        );
        let warnings = capability_warnings(dir.path());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("`alga:extension/storage`") && warnings[0].contains("\"cap:storage.kv\""),
            "{warnings:?}"
        );

        std::fs::write(
            dir.path().join("manifest.json"),
            manifest("[]").replace("wasm-rust@1", "wasm-js@1"),
        )
        .unwrap();
        let warnings = capability_warnings(dir.path());
        assert_eq!(warnings.len(), 1, "one line per JavaScript component: {warnings:?}");
        assert!(
            warnings[0].contains("alga:extension/storage, alga:extension/http")
                && warnings[0].contains("cap:storage.kv, cap:http.fetch"),
            "{warnings:?}"
        );

        // A wasi:http/proxy component's outbound requests need cap:http.fetch too.
        let proxy = wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#).unwrap();
        std::fs::write(dir.path().join("dist/main.wasm"), proxy).unwrap();
        std::fs::write(dir.path().join("manifest.json"), manifest("[]")).unwrap();
        assert_eq!(
            undeclared_capabilities(dir.path()).unwrap(),
            [UndeclaredImport {
                component: "dist/main.wasm".into(),
                interface: "wasi:http/outgoing-handler",
                capability: "cap:http.fetch",
            }]
        );
    }

    #[test]
    fn a_missing_component_names_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"name":"com.test.missing","version":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"my-ext\"\nversion = \"0.1.0\"\n",
        )
        .unwrap();
        let error = format!("{:#}", pack_dir(dir.path()).unwrap_err());
        assert!(error.contains("field `entry`"), "{error}");
        assert!(
            error.contains("cargo build --release --target wasm32-wasip2") && error.contains("release/my_ext.wasm"),
            "{error}"
        );
        std::fs::remove_file(dir.path().join("Cargo.toml")).unwrap();
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        let error = format!("{:#}", pack_dir(dir.path()).unwrap_err());
        assert!(error.contains("`npm run build`"), "{error}");
    }
}
