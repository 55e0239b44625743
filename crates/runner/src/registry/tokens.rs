//! `REGISTRY_TOKENS`: the registry's callers, each a name, a scope and a
//! secret token.
//!
//! Entries are comma-separated, each one of
//! - `TOKEN`: an admin named `token-<first 8 hex of SHA-256(TOKEN)>`;
//! - `NAME=TOKEN`: an admin named `NAME`;
//! - `NAME@SCOPE=TOKEN` with `SCOPE` one of `admin`, `publisher:PREFIX`
//!   (publishes, yanks and reads the names `PREFIX` and `PREFIX.*`),
//!   `tenant:ID` (reads the catalogue, changes only that tenant's installs)
//!   or `runner` (what a runner asks: UI install checks and the revocation
//!   list, nothing else).
//!
//! A token is at least [`MIN_TOKEN_CHARS`] characters and holds neither `,`
//! nor `=` (hex from `openssl rand -hex 32` does). Several tokens may share
//! a name and scope, so a token is rotated by adding the new one, moving
//! callers over, then removing the old one. Presented tokens are compared as
//! SHA-256 digests in constant time against every configured one.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Shortest registry token accepted: guessing must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Longest one-segment publisher prefix.
const MAX_PREFIX_CHARS: usize = 64;

/// What a caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Publish, yank and read the extensions named `prefix` or `prefix.*`.
    Publisher(String),
    /// Read the catalogue; read and change only this tenant's installs.
    Tenant(String),
    /// A runner: only [`RUNNER_ROUTES`].
    Runner,
    /// A gateway elsewhere: only [`GATEWAY_ROUTES`], for any tenant.
    Gateway,
}

impl Scope {
    /// The scope as `REGISTRY_TOKENS` writes it, without its argument.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Publisher(_) => "publisher",
            Scope::Tenant(_) => "tenant",
            Scope::Runner => "runner",
            Scope::Gateway => "gateway",
        }
    }
}

/// The routes a `runner`-scoped token may call; every other route answers
/// it 403.
pub const RUNNER_ROUTES: &[&str] = &["/v1/registry/installs/validate", "/v1/registry/revocations"];

/// The routes a `gateway`-scoped token may call: what one call needs of an
/// install (its sealed secrets included, which only runners can open) and
/// the execution log's appends.
pub const GATEWAY_ROUTES: &[&str] = &[
    "/v1/registry/tenants/{tenant}/installs/{name}/call",
    "/v1/registry/executions",
];

/// An authenticated caller: the token's name and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    /// The caller `serve --dev` on loopback without tokens acts as.
    pub fn dev() -> Caller {
        Caller {
            name: "dev".to_string(),
            scope: Scope::Admin,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// Whether the caller may publish, yank or revoke versions of `extension`.
    pub fn may_publish(&self, extension: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Publisher(prefix) => {
                extension == prefix
                    || extension
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            }
            Scope::Tenant(_) | Scope::Runner | Scope::Gateway => false,
        }
    }

    /// Whether the caller may read and change `tenant`'s installs.
    pub fn may_manage(&self, tenant: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Tenant(own) => own == tenant,
            Scope::Publisher(_) | Scope::Runner | Scope::Gateway => false,
        }
    }

    /// Whether the caller may ask whether `tenant` has a bundle installed
    /// (the runner's UI install check) or read the revocation list.
    pub fn may_check_installs(&self, tenant: &str) -> bool {
        self.scope == Scope::Runner || self.may_manage(tenant)
    }

    /// Whether the caller may call the route matched as `route`: a
    /// `runner` or `gateway` token only its few routes (a route added
    /// later is closed to them by default).
    pub fn may_call(&self, route: &str) -> bool {
        match self.scope {
            Scope::Runner => RUNNER_ROUTES.contains(&route),
            Scope::Gateway => GATEWAY_ROUTES.contains(&route),
            _ => true,
        }
    }
}

struct Entry {
    caller: Caller,
    digest: [u8; 32],
}

/// The configured tokens (the secrets themselves are not kept, only their
/// digests).
#[derive(Clone, Default)]
pub struct Tokens {
    entries: std::sync::Arc<Vec<Entry>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{} ({:?})", e.caller.name, e.caller.scope)),
            )
            .finish()
    }
}

impl Tokens {
    /// `REGISTRY_TOKENS`'s value.
    ///
    /// # Errors
    /// The first bad entry, by position (never the token itself).
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let at = i + 1;
            let (label, token) = match entry.split_once('=') {
                Some((label, token)) => (Some(label.trim()), token.trim()),
                None => (None, entry),
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "entry {at}: the token must be at least {MIN_TOKEN_CHARS} characters"
                ));
            }
            if token.contains('=') {
                return Err(format!("entry {at}: a token may not contain `=`"));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            let caller = match label {
                None => Caller {
                    name: format!("token-{}", &hex::encode(digest)[..8]),
                    scope: Scope::Admin,
                },
                Some(label) => parse_label(label).map_err(|why| format!("entry {at}: {why}"))?,
            };
            entries.push(Entry { caller, digest });
        }
        Ok(Tokens {
            entries: std::sync::Arc::new(entries),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller whose token is `presented`, compared in constant time
    /// against every entry.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for entry in self.entries.iter() {
            if bool::from(entry.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(entry.caller.clone());
            }
        }
        found
    }
}

/// `NAME` or `NAME@SCOPE`.
fn parse_label(label: &str) -> Result<Caller, String> {
    let (name, scope) = match label.split_once('@') {
        None => (label, Scope::Admin),
        Some((name, scope)) => (name, parse_scope(scope)?),
    };
    // The name is written into the history and the audit log as the actor.
    ext_registry::names::check_actor(name).map_err(|why| format!("the name `{name}` {why}"))?;
    Ok(Caller {
        name: name.to_string(),
        scope,
    })
}

fn parse_scope(scope: &str) -> Result<Scope, String> {
    match scope.split_once(':') {
        None if scope == "admin" => Ok(Scope::Admin),
        None if scope == "runner" => Ok(Scope::Runner),
        None if scope == "gateway" => Ok(Scope::Gateway),
        Some(("publisher", prefix)) => {
            ext_registry::names::check_extension(prefix)
                .or_else(|_| check_prefix(prefix))
                .map_err(|why| format!("publisher prefix `{prefix}`: {why}"))?;
            Ok(Scope::Publisher(prefix.to_string()))
        }
        Some(("tenant", tenant)) => {
            ext_registry::names::check_tenant(tenant).map_err(|why| format!("tenant `{tenant}`: {why}"))?;
            Ok(Scope::Tenant(tenant.to_string()))
        }
        _ => Err(format!(
            "scope `{scope}` must be `admin`, `publisher:PREFIX`, `tenant:ID`, `runner` or `gateway`"
        )),
    }
}

/// A one-segment prefix (`acme`) is allowed too: it covers `acme.*`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_CHARS
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("must be a reverse-domain name like `com.acme`".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_scopes() {
        let tokens = Tokens::parse(
            "aaaaaaaaaaaaaaaa, ops=bbbbbbbbbbbbbbbb, ci@publisher:com.acme=cccccccccccccccc, \
             t1@tenant:tenant-1=dddddddddddddddd, fleet@runner=ffffffffffffffff",
        )
        .unwrap();
        let bare = tokens.authenticate("aaaaaaaaaaaaaaaa").unwrap();
        assert!(bare.name.starts_with("token-") && bare.is_admin());
        assert_eq!(tokens.authenticate("bbbbbbbbbbbbbbbb").unwrap().name, "ops");
        let ci = tokens.authenticate(" cccccccccccccccc ").unwrap();
        assert!(ci.may_publish("com.acme.tools") && ci.may_publish("com.acme"));
        assert!(!ci.may_publish("com.acmeevil.tools") && !ci.may_publish("com.other.x"));
        assert!(!ci.may_manage("tenant-1"));
        let t1 = tokens.authenticate("dddddddddddddddd").unwrap();
        assert!(t1.may_manage("tenant-1") && !t1.may_manage("tenant-2") && !t1.may_publish("com.acme.x"));
        assert!(t1.may_call("/v1/registry/tenants/{tenant}/installs"));
        let fleet = tokens.authenticate("ffffffffffffffff").unwrap();
        assert!(fleet.may_check_installs("any-tenant") && fleet.may_call("/v1/registry/revocations"));
        assert!(!fleet.may_manage("any-tenant") && !fleet.may_publish("com.acme.x") && !fleet.is_admin());
        assert!(!fleet.may_call("/v1/registry/extensions") && !fleet.may_call("/v1/registry/audit"));
        assert!(!t1.may_check_installs("tenant-2"));
        assert_eq!(tokens.authenticate("eeeeeeeeeeeeeeee"), None);
        assert_eq!(tokens.authenticate(""), None);
    }

    #[test]
    fn bad_entries_are_named_without_the_token() {
        for (text, wanted) in [
            ("short", "entry 1: the token must be at least 16"),
            ("ok=aaaaaaaaaaaaaaaa,x@root=bbbbbbbbbbbbbbbb", "entry 2: scope `root`"),
            ("a b=aaaaaaaaaaaaaaaa", "entry 1: the name `a b`"),
            ("x@tenant:a/b=aaaaaaaaaaaaaaaa", "entry 1: tenant `a/b`"),
            ("x@publisher:Com.Acme=aaaaaaaaaaaaaaaa", "entry 1: publisher prefix"),
        ] {
            let err = Tokens::parse(text).unwrap_err();
            assert!(err.starts_with(wanted), "{text}: {err}");
            assert!(!err.contains("aaaaaaaaaaaaaaaa"), "{err}");
        }
    }
}
