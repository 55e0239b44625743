//! `RUNNER_ROLES`: which of the binary's roles this process runs (the
//! system spec's process model, like Loki's `-target`): `runner` (execute
//! and UI assets), `registry` (versions and installs), `gateway` (signed-in
//! users' calls to their tenant's installs), or `all`.

use crate::config::source::Source;

/// The roles this binary has.
const ROLE_NAMES: &[&str] = &["runner", "registry", "gateway"];

/// The roles one process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// `POST /v1/execute` and the UI assets.
    pub runner: bool,
    /// `/v1/registry/…`.
    pub registry: bool,
    /// `/api/ext/…`, `/api/ext-proxy/…`, `/api/ext-ui/…`.
    pub gateway: bool,
}

impl Roles {
    /// Every role this binary has.
    pub const ALL: Roles = Roles {
        runner: true,
        registry: true,
        gateway: true,
    };

    /// The runner alone (the default outside `serve --dev`).
    pub const RUNNER: Roles = Roles {
        runner: true,
        registry: false,
        gateway: false,
    };

    /// `RUNNER_ROLES`: comma-separated role names or `all`; default
    /// `runner`, and `all` under `serve --dev`.
    pub fn from_source(source: &Source) -> Roles {
        let Some(text) = source.text("RUNNER_ROLES") else {
            return if source.dev() { Roles::ALL } else { Roles::RUNNER };
        };
        match parse(text) {
            Ok(roles) => roles,
            Err(why) => {
                source.problem(format!("RUNNER_ROLES: {why}"));
                Roles::ALL
            }
        }
    }

    /// The roles' names, for the start-up log.
    pub fn names(self) -> String {
        let on = [self.runner, self.registry, self.gateway];
        ROLE_NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `runner,registry`, `gateway`, `all`, …
fn parse(text: &str) -> Result<Roles, String> {
    let mut roles = Roles {
        runner: false,
        registry: false,
        gateway: false,
    };
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "all" => roles = Roles::ALL,
            "runner" => roles.runner = true,
            "registry" => roles.registry = true,
            "gateway" => roles.gateway = true,
            other => {
                return Err(format!(
                    "unknown role `{other}` (roles: {}, or all)",
                    ROLE_NAMES.join(", ")
                ));
            }
        }
    }
    if roles
        == (Roles {
            runner: false,
            registry: false,
            gateway: false,
        })
    {
        return Err(format!("`{text}` names no role ({}, or all)", ROLE_NAMES.join(", ")));
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lists() {
        assert_eq!(parse("all"), Ok(Roles::ALL));
        assert_eq!(parse(" registry , runner, gateway "), Ok(Roles::ALL));
        assert_eq!(
            parse("registry"),
            Ok(Roles {
                runner: false,
                registry: true,
                gateway: false
            })
        );
        assert_eq!(
            parse("runner,gateway"),
            Ok(Roles {
                runner: true,
                registry: false,
                gateway: true
            })
        );
        assert_eq!(
            parse("gateway"),
            Ok(Roles {
                runner: false,
                registry: false,
                gateway: true
            })
        );
        assert_eq!(Roles::ALL.names(), "runner,registry,gateway");
        assert!(parse("runner,cache").unwrap_err().contains("unknown role `cache`"));
        assert!(parse("").unwrap_err().contains("names no role"));
    }
}
