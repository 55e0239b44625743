//! What `pack`, `publish` and the registry check before a bundle is
//! published: the component import analysis (read without compiling), the
//! runner's import and world checks, and the capability warnings.

use std::path::Path;

use anyhow::{Context, bail};

/// What the runner checks at load, checked before a bundle leaves the
/// author's machine: [`check_worlds`] (first: a component declared
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
