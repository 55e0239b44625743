//! `RUNNER_ROLES`: which of the binary's roles this process runs (the
//! system spec's process model, like Loki's `-target`): `runner` (execute
//! and UI assets), `registry` (versions and installs), `gateway` (accepted;
//! not built yet), or `all`.

use crate::config::source::Source;

/// The roles this binary has. `gateway` is accepted so shared deployment
/// manifests validate, and runs nothing yet.
const ROLE_NAMES: &[&str] = &["runner", "registry", "gateway"];

/// The roles one process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// `POST /v1/execute` and the UI assets.
    pub runner: bool,
    /// `/v1/registry/…`.
    pub registry: bool,
}

impl Roles {
    /// Every role this binary has.
    pub const ALL: Roles = Roles {
        runner: true,
        registry: true,
    };

    /// `RUNNER_ROLES`: comma-separated role names or `all`; default
    /// `runner`, and `all` under `serve --dev`.
    pub fn from_source(source: &Source) -> Roles {
        let Some(text) = source.text("RUNNER_ROLES") else {
            return if source.dev() {
                Roles::ALL
            } else {
                Roles {
                    runner: true,
                    registry: false,
                }
            };
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
        let mut names = Vec::new();
        if self.runner {
            names.push("runner");
        }
        if self.registry {
            names.push("registry");
        }
        names.join(",")
    }
}

/// `runner,registry`, `all`, … (`gateway` alone runs nothing, so it is
/// refused until the gateway exists).
fn parse(text: &str) -> Result<Roles, String> {
    let mut roles = Roles {
        runner: false,
        registry: false,
    };
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "all" => roles = Roles::ALL,
            "runner" => roles.runner = true,
            "registry" => roles.registry = true,
            "gateway" => {}
            other => {
                return Err(format!(
                    "unknown role `{other}` (roles: {}, or all)",
                    ROLE_NAMES.join(", ")
                ));
            }
        }
    }
    if !roles.runner && !roles.registry {
        return Err(format!(
            "`{text}` names no role this binary runs yet (runner, registry, or all)"
        ));
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lists() {
        assert_eq!(parse("all"), Ok(Roles::ALL));
        assert_eq!(parse(" registry , runner "), Ok(Roles::ALL));
        assert_eq!(
            parse("registry"),
            Ok(Roles {
                runner: false,
                registry: true
            })
        );
        assert_eq!(
            parse("runner,gateway"),
            Ok(Roles {
                runner: true,
                registry: false
            })
        );
        assert!(parse("gateway").unwrap_err().contains("names no role"));
        assert!(parse("runner,cache").unwrap_err().contains("unknown role `cache`"));
        assert!(parse("").is_err());
    }
}
