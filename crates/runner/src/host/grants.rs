//! Which capabilities one execution has.
//!
//! Effective grants = the capabilities the verified manifest declares ∩
//! those the install grants (the envelope's `providers`; absent means "as
//! declared") ∪ the always-granted `context.read`, `log.emit` and
//! `user.read`. A capability not granted gives the guest its typed deny
//! error, never a trap.

use std::collections::BTreeSet;

/// Granted to every extension whatever the manifest or install says.
pub const ALWAYS_GRANTED: &[&str] = &["cap:context.read", "cap:log.emit", "cap:user.read"];

/// Every capability this runner knows, in canonical form. The product
/// interfaces (`scheduler.manage`, `invoice.manual.create`, `client.read`,
/// `service.read`) are known names without a host implementation yet, so an
/// install may carry them without being refused.
pub const KNOWN: &[&str] = &[
    "cap:context.read",
    "cap:log.emit",
    "cap:user.read",
    "cap:secrets.get",
    "cap:http.fetch",
    "cap:storage.kv",
    "cap:ui.proxy",
    "cap:metrics.emit",
    "cap:scheduler.manage",
    "cap:invoice.manual.create",
    "cap:client.read",
    "cap:service.read",
];

pub const STORAGE_KV: &str = "cap:storage.kv";
pub const SECRETS_GET: &str = "cap:secrets.get";
pub const HTTP_FETCH: &str = "cap:http.fetch";
pub const UI_PROXY: &str = "cap:ui.proxy";

/// The capabilities of one execution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    granted: BTreeSet<&'static str>,
}

impl Grants {
    /// `declared`: the manifest's canonical capabilities; `providers`: the
    /// install's validated grants ([`canonical_providers`]), if any.
    pub fn effective(declared: &[String], providers: Option<&[String]>) -> Grants {
        let mut granted: BTreeSet<&'static str> = ALWAYS_GRANTED.iter().copied().collect();
        for known in KNOWN {
            let declared = declared.iter().any(|d| d == known);
            let installed = providers.is_none_or(|list| list.iter().any(|p| p == known));
            if declared && installed {
                granted.insert(known);
            }
        }
        Grants { granted }
    }

    pub fn allows(&self, capability: &str) -> bool {
        self.granted.contains(capability)
    }

    /// The granted capabilities, sorted (for logs).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.granted.iter().copied()
    }
}

/// Canonical forms of the envelope's `providers`.
///
/// # Errors
/// `(index, message)` for the first entry that is malformed or names a
/// capability this runner does not know.
pub fn canonical_providers(providers: &[String]) -> Result<Vec<String>, (usize, String)> {
    providers
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let canonical = ext_bundle::normalise_capability(raw).map_err(|why| (index, why))?;
            if KNOWN.contains(&canonical.as_str()) {
                Ok(canonical)
            } else {
                Err((
                    index,
                    format!("unknown capability `{raw}` (known: {})", KNOWN.join(", ")),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn effective_is_declared_intersect_installed_plus_always() {
        let declared = strings(&["cap:storage.kv", "cap:http.fetch", "cap:made.up"]);
        let as_declared = Grants::effective(&declared, None);
        assert!(as_declared.allows(STORAGE_KV) && as_declared.allows(HTTP_FETCH));
        assert!(!as_declared.allows("cap:made.up") && !as_declared.allows(SECRETS_GET));
        assert!(ALWAYS_GRANTED.iter().all(|c| as_declared.allows(c)));

        let narrowed = Grants::effective(&declared, Some(&strings(&["cap:storage.kv", "cap:secrets.get"])));
        assert!(narrowed.allows(STORAGE_KV));
        assert!(!narrowed.allows(HTTP_FETCH), "not installed");
        assert!(!narrowed.allows(SECRETS_GET), "installed but not declared");

        let none = Grants::effective(&declared, Some(&[]));
        assert_eq!(none.names().collect::<Vec<_>>().len(), ALWAYS_GRANTED.len());
    }

    #[test]
    fn providers_are_normalised_and_unknown_ones_refused() {
        assert_eq!(
            canonical_providers(&strings(&["storage.kv", "cap:http.fetch", "log"])).unwrap(),
            strings(&["cap:storage.kv", "cap:http.fetch", "cap:log.emit"])
        );
        let (index, message) = canonical_providers(&strings(&["storage.kv", "cap:root.shell"])).unwrap_err();
        assert_eq!(index, 1);
        assert!(message.contains("cap:root.shell"), "{message}");
        assert_eq!(canonical_providers(&strings(&["Bad Cap"])).unwrap_err().0, 0);
    }
}
