//! What the registry accepts as a name: extension names (the manifest's
//! rule), publisher namespaces, versions, tenant ids and actor names. Every
//! check returns a message for the field it was given.

/// Bytes of a tenant id: the runner's envelope accepts ids of up to 256
/// bytes; the registry keeps them to a size a URL path and an index hold well
/// (a UUID is 36).
pub const MAX_TENANT_BYTES: usize = 128;

/// Bytes of an actor (token) name written to the history and audit log.
pub const MAX_ACTOR_BYTES: usize = 64;

/// Segments of an extension name that make its publisher namespace:
/// `com.acme.billing.sync` belongs to `com.acme`, the reverse of a domain
/// one owns, so no publisher can claim a deeper prefix of another's domain.
pub const NAMESPACE_SEGMENTS: usize = 2;

/// An extension name: reverse-domain, as in the manifest.
///
/// # Errors
/// Why `name` is not one.
pub fn check_extension(name: &str) -> Result<(), String> {
    ext_bundle::check_name(name)
}

/// The publisher namespace an extension name belongs to.
pub fn namespace_of(name: &str) -> String {
    name.split('.').take(NAMESPACE_SEGMENTS).collect::<Vec<_>>().join(".")
}

/// A version: semver without build metadata (`1.0.0+a` and `1.0.0+b` would
/// be one version to semver's ordering and two to a reader).
///
/// # Errors
/// Why `version` is not one.
pub fn parse_version(version: &str) -> Result<semver::Version, String> {
    let parsed = semver::Version::parse(version).map_err(|e| format!("`{version}` is not a semantic version: {e}"))?;
    if !parsed.build.is_empty() {
        return Err(format!(
            "`{version}` has build metadata (`+{}`); publish without it",
            parsed.build
        ));
    }
    Ok(parsed)
}

/// A tenant id: 1–[`MAX_TENANT_BYTES`] bytes of `A-Z a-z 0-9 - _ .`, not
/// starting with `.`.
///
/// # Errors
/// Why `tenant` is not one.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    check_token(tenant, MAX_TENANT_BYTES)
}

/// An actor name (a token's name): the tenant id's rule, at most
/// [`MAX_ACTOR_BYTES`].
///
/// # Errors
/// Why `actor` is not one.
pub fn check_actor(actor: &str) -> Result<(), String> {
    check_token(actor, MAX_ACTOR_BYTES)
}

fn check_token(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} bytes, found {}", value.len()));
    }
    if value.starts_with('.') {
        return Err(format!("`{value}` must not start with `.`"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{}` may contain only A-Z, a-z, 0-9, '-', '_' and '.' (found {c:?})",
            value.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert_eq!(namespace_of("com.acme.billing.sync"), "com.acme");
        assert_eq!(namespace_of("com.acme"), "com.acme");
        assert!(check_extension("com.acme.hello").is_ok());
        assert!(check_extension("hello").unwrap_err().contains("reverse-domain"));
        assert!(parse_version("1.2.3-rc.1").is_ok());
        assert!(parse_version("1.2").unwrap_err().contains("not a semantic version"));
        assert!(parse_version("1.2.3+abc").unwrap_err().contains("build metadata"));
        assert!(check_tenant("tenant-1_a.b").is_ok());
        assert!(check_tenant("").unwrap_err().contains("empty"));
        assert!(check_tenant(".hidden").unwrap_err().contains("start with"));
        assert!(check_tenant("a/b").unwrap_err().contains("'/'"));
        assert!(
            check_tenant(&"t".repeat(MAX_TENANT_BYTES + 1))
                .unwrap_err()
                .contains("at most 128")
        );
        assert!(check_actor(&"a".repeat(MAX_ACTOR_BYTES)).is_ok());
    }
}
