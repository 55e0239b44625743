//! Which capabilities one execution has.
//!
//! Effective grants = the capabilities the verified manifest declares ∩
//! those the install grants (the envelope's `providers`; absent means "as
//! declared") ∪ the always-granted `context.read`, `log.emit` and
//! `user.read`. A capability not granted gives the guest its typed deny
//! error, never a trap.

use std::collections::BTreeSet;

use super::registry;

/// The capabilities of one execution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    granted: BTreeSet<&'static str>,
}

impl Grants {
    /// `declared`: the manifest's canonical capabilities; `providers`: the
    /// install's validated grants ([`canonical_providers`]), if any.
    pub fn effective(declared: &[String], providers: Option<&[String]>) -> Grants {
        let granted = registry::CAPABILITIES
            .iter()
            .filter(|c| {
                let declared = declared.iter().any(|d| d == c.name);
                let installed = providers.is_none_or(|list| list.iter().any(|p| p == c.name));
                c.always_granted || (declared && installed)
            })
            .map(|c| c.name)
            .collect();
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
            if registry::is_known(&canonical) {
                Ok(canonical)
            } else {
                let known: Vec<&str> = registry::known_names().collect();
                Err((
                    index,
                    format!("unknown capability `{raw}` (known: {})", known.join(", ")),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{http, secrets, storage};

    const STORAGE_KV: &str = storage::CAPABILITY;
    const HTTP_FETCH: &str = http::CAPABILITY;
    const SECRETS_GET: &str = secrets::CAPABILITY;

    fn always_granted() -> Vec<&'static str> {
        registry::CAPABILITIES
            .iter()
            .filter(|c| c.always_granted)
            .map(|c| c.name)
            .collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn effective_is_declared_intersect_installed_plus_always() {
        let declared = strings(&["cap:storage.kv", "cap:http.fetch", "cap:made.up"]);
        let as_declared = Grants::effective(&declared, None);
        assert!(as_declared.allows(STORAGE_KV) && as_declared.allows(HTTP_FETCH));
        assert!(!as_declared.allows("cap:made.up") && !as_declared.allows(SECRETS_GET));
        assert!(always_granted().iter().all(|c| as_declared.allows(c)));

        let narrowed = Grants::effective(&declared, Some(&strings(&["cap:storage.kv", "cap:secrets.get"])));
        assert!(narrowed.allows(STORAGE_KV));
        assert!(!narrowed.allows(HTTP_FETCH), "not installed");
        assert!(!narrowed.allows(SECRETS_GET), "installed but not declared");

        let none = Grants::effective(&declared, Some(&[]));
        assert_eq!(none.names().collect::<Vec<_>>(), always_granted());
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
