//! The capability table: every capability this runner implements, the
//! interfaces each one gates, whether every extension has it, and whether
//! its host functions are async. Grants ([`super::grants`]), the import
//! check at load ([`super::is_supported_import`]), `pack`'s warnings about
//! undeclared capabilities and the `/metrics` host-call labels all read
//! this one table; each capability's name is written once, in its folder.

use super::{
    clients, context, http, invoicing, logging, metrics, scheduler, secrets, services, storage, ui_proxy, user,
};

/// How a capability's host functions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    /// Plain host functions: no I/O, nothing for the deadline to cancel.
    Sync,
    /// Async host functions (they do I/O): the execution deadline, an
    /// outer timeout, can cancel them mid-call. `bindings.rs` must say
    /// `async` for each of their `alga:extension` interfaces.
    Async,
}

/// One capability.
#[derive(Clone, Copy, Debug)]
pub struct Capability {
    /// Canonical grant name (`cap:storage.kv`).
    pub name: &'static str,
    /// Interfaces it gates, unversioned (`alga:extension/storage`); a
    /// component importing one without the grant gets typed denials.
    pub interfaces: &'static [&'static str],
    /// Granted to every extension whatever the manifest or install says.
    pub always_granted: bool,
    pub calls: Calls,
}

/// The capabilities this runner implements (in the order `pack` lists
/// undeclared ones).
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: context::CAPABILITY,
        interfaces: &["alga:extension/context"],
        always_granted: true,
        calls: Calls::Sync,
    },
    Capability {
        name: logging::CAPABILITY,
        interfaces: &["alga:extension/logging"],
        always_granted: true,
        calls: Calls::Sync,
    },
    Capability {
        name: user::CAPABILITY,
        interfaces: &["alga:extension/user", "alga:extension/user-v2"],
        always_granted: true,
        calls: Calls::Sync,
    },
    Capability {
        name: storage::CAPABILITY,
        interfaces: &["alga:extension/storage"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: http::CAPABILITY,
        // A `wasi:http/proxy` component's outbound requests are egress too.
        interfaces: &["alga:extension/http", "wasi:http/outgoing-handler"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: secrets::CAPABILITY,
        interfaces: &["alga:extension/secrets"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: ui_proxy::CAPABILITY,
        interfaces: &["alga:extension/ui-proxy"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: metrics::CAPABILITY,
        interfaces: &["alga:extension/metrics"],
        always_granted: false,
        calls: Calls::Sync,
    },
    // The product interfaces: each call goes to the host product's API.
    Capability {
        name: scheduler::CAPABILITY,
        interfaces: &["alga:extension/scheduler"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: invoicing::CAPABILITY,
        interfaces: &["alga:extension/invoicing"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: clients::CAPABILITY,
        interfaces: &["alga:extension/clients"],
        always_granted: false,
        calls: Calls::Async,
    },
    Capability {
        name: services::CAPABILITY,
        interfaces: &["alga:extension/services"],
        always_granted: false,
        calls: Calls::Async,
    },
];

/// `alga:extension` interfaces that carry only types.
pub const TYPE_ONLY_INTERFACES: &[&str] = &["alga:extension/types"];

/// The capability named `name` (canonical form).
pub fn find(name: &str) -> Option<&'static Capability> {
    CAPABILITIES.iter().find(|c| c.name == name)
}

/// Whether an install may name `name`.
pub fn is_known(name: &str) -> bool {
    find(name).is_some()
}

/// Every known name, in the table's order (for error messages).
pub fn known_names() -> impl Iterator<Item = &'static str> {
    CAPABILITIES.iter().map(|c| c.name)
}

/// The capability that gates `interface` (unversioned), if one does.
pub fn gating(interface: &str) -> Option<&'static Capability> {
    CAPABILITIES.iter().find(|c| c.interfaces.contains(&interface))
}

/// Whether `interface` (unversioned, `alga:extension/…`) is one this runner provides.
pub fn provides_alga(interface: &str) -> bool {
    TYPE_ONLY_INTERFACES.contains(&interface) || gating(interface).is_some_and(|_| interface.starts_with(ALGA))
}

/// The `alga:extension` package prefix.
pub const ALGA: &str = "alga:extension/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_canonical() {
        let mut names: Vec<&str> = known_names().collect();
        for name in &names {
            assert_eq!(ext_bundle::normalise_capability(name).as_deref(), Ok(*name));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CAPABILITIES.len());
    }

    /// `bindgen!` takes its async list as a literal: the table's `Async`
    /// rows and `bindings.rs` must agree, interface by interface.
    #[test]
    fn async_rows_match_the_bindings() {
        let bindings = include_str!("bindings.rs");
        for capability in CAPABILITIES {
            for interface in capability.interfaces.iter().filter(|i| i.starts_with(ALGA)) {
                let declared_async = bindings.contains(&format!("\"{interface}\": async"));
                assert_eq!(declared_async, capability.calls == Calls::Async, "{interface}");
            }
        }
    }
}
