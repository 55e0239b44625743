//! `registry install`, `upgrade`, `rollback`, `uninstall` (`--purge`),
//! `history` and `list --tenant`: a tenant's installs under
//! `/v1/registry/tenants/{tenant}/installs`.
//!
//! Every change is conditional. `install` sends `If-None-Match: *` (a first
//! install only); `upgrade` and `rollback` read the install, check the
//! direction against its version, and send `If-Match` with the revision
//! they read, so a change made in between is refused (412) rather than
//! overwritten.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, IF_MATCH, IF_NONE_MATCH};
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::client::{Answer, Client};
use super::output::{Shown, field, items, list, table};

/// Flags that change what an install grants.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Grants {
    /// A capability to grant (repeat for more); none given: every capability the version's
    /// manifest declares (install) or the install's current ones (upgrade, rollback).
    #[arg(long = "capability", value_name = "CAP")]
    pub capabilities: Vec<String>,
    /// An egress host to allow (repeat for more); none given: as for --capability, with the
    /// manifest's `network.allowed_hosts` (none for a manifest without `network`).
    #[arg(long = "egress", value_name = "HOST")]
    pub egress: Vec<String>,
    /// The install's config: a JSON object of strings, or @FILE holding one; none given: an
    /// empty config (install) or the install's current one (upgrade, rollback).
    #[arg(long, value_name = "JSON|@FILE", value_parser = parse_config)]
    pub config: Option<BTreeMap<String, String>>,
}

/// `--config`'s value: inline JSON or `@FILE`.
///
/// # Errors
/// An unreadable file (named), or not a JSON object of strings.
pub fn parse_config(value: &str) -> Result<BTreeMap<String, String>, String> {
    let (text, source) = match value.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
            (text, format!("{path}: "))
        }
        None => (value.to_string(), String::new()),
    };
    serde_json::from_str(&text).map_err(|e| format!("{source}not a JSON object of strings: {e}"))
}

/// A version argument: semver without build metadata, as the registry
/// takes it.
///
/// # Errors
/// Why it is not one.
pub fn parse_version(value: &str) -> Result<String, String> {
    ext_registry::names::parse_version(value).map(|_| value.to_string())
}

/// Arguments of `registry install`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// The extension's name.
    pub name: String,
    /// The version to install.
    #[arg(value_parser = parse_version)]
    pub version: String,
    /// The tenant to install it for.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub grants: Grants,
    /// Install it disabled (kept, not run, until enabled).
    #[arg(long)]
    pub disabled: bool,
}

/// Which way a version change must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upgrade,
    Rollback,
}

/// Arguments of `registry upgrade` and `registry rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeArgs {
    /// The extension's name.
    pub name: String,
    /// The target version (rollback without it: the version before the current one in the
    /// install's history).
    #[arg(value_parser = parse_version)]
    pub version: Option<String>,
    /// The tenant whose install changes.
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub grants: Grants,
    /// Apply only if the install is still at this revision (its `revision`, from `--json`);
    /// default: the revision read just before the change.
    #[arg(long)]
    pub revision: Option<i64>,
}

/// Arguments of the commands naming one install: `uninstall`, `history`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallRef {
    /// The extension's name.
    pub name: String,
    /// The tenant.
    #[arg(long)]
    pub tenant: String,
}

/// Arguments of `registry uninstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub install: InstallRef,
    /// Also remove the install's data: everything its guests stored in the KV store
    /// (`?purge=true`). Secrets go with every uninstall; the history, the audit log, the
    /// execution log and the published versions stay. Run it again to finish a purge the
    /// registry answered 503 `purge_incomplete`.
    #[arg(long)]
    pub purge: bool,
}

fn install_url(client: &Client, tenant: &str, name: &str, tail: &[&str]) -> Url {
    let mut segments = vec!["v1", "registry", "tenants", tenant, "installs", name];
    segments.extend_from_slice(tail);
    client.url(&segments)
}

fn json_headers(condition: (reqwest::header::HeaderName, String)) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (name, value) = condition;
    let value = HeaderValue::from_str(&value).with_context(|| format!("{name}: `{value}`"))?;
    headers.insert(name, value);
    Ok(headers)
}

/// `PUT body` to `url` with a precondition in `headers`; a 412 is
/// explained by `why_refused` (what the precondition meant), other
/// refusals pass through.
async fn put_conditionally(
    client: &Client,
    url: Url,
    headers: HeaderMap,
    body: &Value,
    why_refused: impl FnOnce() -> String,
) -> anyhow::Result<Answer> {
    match client
        .send(Method::PUT, url, headers, Some(body.to_string().into()))
        .await
    {
        Err(e) if e.code() == Some("precondition_failed") => Err(anyhow::Error::new(e).context(why_refused())),
        other => Ok(other?),
    }
}

/// The install as people read it.
fn describe(verb: &str, install: &Value) -> String {
    format!(
        "{verb}: {} {} for tenant {}\n  install_id:   {}\n  revision:     {}\n  content_hash: {}\n  enabled:      {}\n  capabilities: {}\n  egress:       {}\n",
        field(install, "extension"),
        field(install, "version"),
        field(install, "tenant"),
        field(install, "install_id"),
        field(install, "revision"),
        field(install, "content_hash"),
        field(install, "enabled"),
        list(install, "capabilities"),
        list(install, "egress"),
    )
}

/// First install of `name` at a version for a tenant (`If-None-Match: *`).
///
/// # Errors
/// Already installed (412, reported as such); the registry's refusal
/// (unknown version, capabilities the manifest does not declare, …).
pub async fn install(client: &Client, args: &InstallArgs) -> anyhow::Result<Shown> {
    let mut body = json!({"version": args.version, "enabled": !args.disabled});
    let grants = &args.grants;
    if !grants.capabilities.is_empty() {
        body["capabilities"] = json!(grants.capabilities);
    }
    if !grants.egress.is_empty() {
        body["egress"] = json!(grants.egress);
    }
    if let Some(config) = &grants.config {
        body["config"] = json!(config);
    }
    let url = install_url(client, &args.tenant, &args.name, &[]);
    let headers = json_headers((IF_NONE_MATCH, "*".to_string()))?;
    let answer = put_conditionally(client, url, headers, &body, || {
        format!(
            "{} is already installed for tenant {}; use `ext-runner registry upgrade` or `rollback` to change its version",
            args.name, args.tenant
        )
    })
    .await?;
    Ok(Shown {
        text: describe("installed", &answer.body),
        json: answer.body,
    })
}

/// Move an install to a higher (`Upgrade`) or lower (`Rollback`) version,
/// keeping its capabilities, egress, config and enabled state unless the
/// flags give others. The install is read first; the change applies only
/// at the revision read (or `--revision`).
///
/// # Errors
/// A version in the wrong direction, or none earlier in the history
/// (refused here, before any change); a change in between (412); the
/// registry's refusal.
pub async fn change(client: &Client, args: &ChangeArgs, direction: Direction) -> anyhow::Result<Shown> {
    let url = install_url(client, &args.tenant, &args.name, &[]);
    let current = client.get(url.clone()).await?;
    let install = &current.body;
    let from = field(install, "version");
    let target = match (&args.version, direction) {
        (Some(version), _) => version.clone(),
        (None, Direction::Rollback) => previous_version(client, args, install).await?,
        (None, Direction::Upgrade) => bail!("upgrade: name the VERSION to upgrade to"),
    };
    check_direction(direction, &from, &target)?;

    let grants = &args.grants;
    let keep = |name: &str, given: &[String]| match given.is_empty() {
        true => install[name].clone(),
        false => json!(given),
    };
    let body = json!({
        "version": target,
        "capabilities": keep("capabilities", &grants.capabilities),
        "egress": keep("egress", &grants.egress),
        "config": grants.config.as_ref().map_or_else(|| install["config"].clone(), |c| json!(c)),
        "enabled": install["enabled"],
    });
    let etag = match args.revision {
        Some(revision) => format!("\"{revision}\""),
        None => etag_of(&current)?,
    };
    let headers = json_headers((IF_MATCH, etag))?;
    let answer = put_conditionally(client, url, headers, &body, || {
        format!(
            "the install of {} for tenant {} changed since it was read (revision {}); nothing was changed: read it again and retry",
            args.name,
            args.tenant,
            args.revision.map_or_else(|| field(install, "revision"), |r| r.to_string()),
        )
    })
    .await?;
    let verb = match direction {
        Direction::Upgrade => format!("upgraded from {from}"),
        Direction::Rollback => format!("rolled back from {from}"),
    };
    Ok(Shown {
        text: describe(&verb, &answer.body),
        json: answer.body,
    })
}

/// The install's `ETag` (what `If-Match` takes), or its revision quoted.
fn etag_of(answer: &Answer) -> anyhow::Result<String> {
    if let Some(etag) = &answer.etag {
        return Ok(etag.clone());
    }
    match answer.body["revision"].as_i64() {
        Some(revision) => Ok(format!("\"{revision}\"")),
        None => bail!("the registry's install answer has neither an ETag nor a revision"),
    }
}

/// An upgrade goes to a higher version, a rollback to a lower one.
///
/// # Errors
/// `target` is not that way from `from`, the flag to use named.
pub fn check_direction(direction: Direction, from: &str, target: &str) -> anyhow::Result<()> {
    let parse = |v: &str, what: &str| {
        ext_registry::names::parse_version(v).map_err(|why| anyhow::anyhow!("{what} version: {why}"))
    };
    let (from_v, target_v) = (parse(from, "installed")?, parse(target, "VERSION")?);
    match direction {
        Direction::Upgrade if target_v <= from_v => bail!(
            "upgrade: {target} is not newer than the installed {from}; use `ext-runner registry rollback` to go back"
        ),
        Direction::Rollback if target_v >= from_v => bail!(
            "rollback: {target} is not older than the installed {from}; use `ext-runner registry upgrade` to go forward"
        ),
        _ => Ok(()),
    }
}

/// The version a bare `rollback` goes to: in this install's history
/// (entries of its `install_id`), the latest version lower than the
/// current one.
///
/// # Errors
/// None in the history; the registry's refusal.
async fn previous_version(client: &Client, args: &ChangeArgs, install: &Value) -> anyhow::Result<String> {
    let history = client
        .get(install_url(client, &args.tenant, &args.name, &["history"]))
        .await?;
    let current = field(install, "version");
    let install_id = &install["install_id"];
    previous_in(items(&history.body), install_id, &current).with_context(|| {
        format!(
            "rollback: the history of {} for tenant {} has no version before {current}; name the VERSION",
            args.name, args.tenant
        )
    })
}

/// The latest version lower than `current` among `entries` of `install_id`.
fn previous_in(entries: &[Value], install_id: &Value, current: &str) -> Option<String> {
    let current = ext_registry::names::parse_version(current).ok()?;
    entries
        .iter()
        .rev()
        .filter(|entry| &entry["install_id"] == install_id)
        .filter_map(|entry| entry["version"].as_str())
        .find(|version| ext_registry::names::parse_version(version).is_ok_and(|v| v < current))
        .map(str::to_string)
}

/// Uninstall (`DELETE`, with `?purge=true` for `--purge`).
///
/// # Errors
/// No such install (for a purge: and none pending); the registry's refusal.
pub async fn uninstall(client: &Client, args: &UninstallArgs) -> anyhow::Result<Shown> {
    let InstallRef { name, tenant } = &args.install;
    let mut url = install_url(client, tenant, name, &[]);
    if args.purge {
        url.query_pairs_mut().append_pair("purge", "true");
    }
    let answer = client.send(Method::DELETE, url, HeaderMap::new(), None).await?;
    let verb = if args.purge {
        "uninstalled and purged"
    } else {
        "uninstalled"
    };
    Ok(Shown {
        json: answer.body,
        text: format!("{verb} {name} for tenant {tenant}\n"),
    })
}

/// The install's history, oldest first.
///
/// # Errors
/// The tenant never installed it; the registry's refusal.
pub async fn history(client: &Client, args: &InstallRef) -> anyhow::Result<Shown> {
    let url = install_url(client, &args.tenant, &args.name, &["history"]);
    let answer = client.get(url).await?;
    let rows: Vec<Vec<String>> = items(&answer.body)
        .iter()
        .map(|e| {
            ["at", "action", "version", "actor"]
                .iter()
                .map(|name| field(e, name))
                .collect()
        })
        .collect();
    Ok(Shown {
        text: table(&["AT", "ACTION", "VERSION", "ACTOR"], &rows),
        json: answer.body,
    })
}

/// A tenant's installs.
///
/// # Errors
/// The registry's refusal.
pub async fn installs(client: &Client, tenant: &str) -> anyhow::Result<Shown> {
    let answer = client
        .get(client.url(&["v1", "registry", "tenants", tenant, "installs"]))
        .await?;
    let rows: Vec<Vec<String>> = items(&answer.body)
        .iter()
        .map(|i| {
            ["extension", "version", "enabled", "revision", "updated_at"]
                .iter()
                .map(|name| field(i, name))
                .collect()
        })
        .collect();
    Ok(Shown {
        text: table(&["EXTENSION", "VERSION", "ENABLED", "REVISION", "UPDATED"], &rows),
        json: answer.body,
    })
}

/// `POST /v1/registry/secrets/reseal`: every install's secrets re-sealed
/// under the current secrets key; shows the counts and each failure.
///
/// # Errors
/// A caller who is not an admin (403); no secrets key (503); the registry's
/// refusal.
pub async fn reseal(client: &Client) -> anyhow::Result<Shown> {
    let url = client.url(&["v1", "registry", "secrets", "reseal"]);
    let answer = client.send(Method::POST, url, HeaderMap::new(), None).await?;
    let report = &answer.body;
    let count = |name: &str| report[name].as_u64().unwrap_or(0);
    let mut text = format!(
        "re-sealed {}, already current {}, failed {}\n",
        count("resealed"),
        count("already_current"),
        count("failed")
    );
    for failure in report["failures"].as_array().map_or(&[][..], Vec::as_slice) {
        text.push_str(&format!(
            "failed: {} ({}/{}): {}\n",
            field(failure, "install_id"),
            field(failure, "tenant"),
            field(failure, "extension"),
            field(failure, "reason")
        ));
    }
    if count("failed") > 0 {
        text.push_str("keep the previous secrets keys until a re-seal reports no failures\n");
    }
    Ok(Shown {
        text,
        json: answer.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_checked_by_semver_precedence() {
        let cases = [
            (Direction::Upgrade, "1.0.0", "1.1.0", true),
            (Direction::Upgrade, "1.9.0", "1.10.0", true),
            (Direction::Upgrade, "1.0.0-rc.1", "1.0.0", true),
            (Direction::Upgrade, "1.1.0", "1.0.0", false),
            (Direction::Upgrade, "1.0.0", "1.0.0", false),
            (Direction::Rollback, "1.1.0", "1.0.0", true),
            (Direction::Rollback, "1.0.0", "1.1.0", false),
            (Direction::Rollback, "1.0.0", "1.0.0", false),
        ];
        for (direction, from, to, ok) in cases {
            let result = check_direction(direction, from, to);
            assert_eq!(result.is_ok(), ok, "{direction:?} {from} -> {to}: {result:?}");
        }
        let err = check_direction(Direction::Upgrade, "1.1.0", "1.0.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rollback"), "{err}");
    }

    #[test]
    fn a_bare_rollback_goes_to_the_latest_lower_version_of_this_install() {
        let entry = |id: &str, version: &str| json!({"install_id": id, "version": version});
        let history = [
            entry("old", "0.9.0"),
            entry("i", "1.0.0"),
            entry("i", "1.2.0"),
            entry("i", "1.1.0"),
        ];
        let id = json!("i");
        assert_eq!(previous_in(&history, &id, "1.1.0").as_deref(), Some("1.0.0"));
        assert_eq!(previous_in(&history, &id, "1.2.0").as_deref(), Some("1.1.0"));
        assert_eq!(
            previous_in(&history, &id, "1.0.0"),
            None,
            "an older install's versions do not count"
        );
    }

    #[test]
    fn config_is_inline_json_or_a_file() {
        assert_eq!(parse_config(r#"{"a":"b"}"#).unwrap()["a"], "b");
        assert!(
            parse_config(r#"{"a":1}"#)
                .unwrap_err()
                .contains("JSON object of strings")
        );
        let err = parse_config("@/no/such/config.json").unwrap_err();
        assert!(err.contains("/no/such/config.json"), "{err}");
        assert!(parse_version("1.0").is_err() && parse_version("1.0.0").is_ok());
    }
}
