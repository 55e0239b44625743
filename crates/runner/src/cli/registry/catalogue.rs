//! `registry list`, `show`, `yank` and `revoke`: the catalogue under
//! `/v1/registry/extensions`.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::client::Client;
use super::output::{Shown, field, items, table};

/// Arguments naming one version: `yank`, `revoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct VersionRef {
    /// The extension's name.
    pub name: String,
    /// The version.
    #[arg(value_parser = super::installs::parse_version)]
    pub version: String,
}

/// The catalogue: every extension.
///
/// # Errors
/// The registry's refusal.
pub async fn extensions(client: &Client) -> anyhow::Result<Shown> {
    let answer = client.get(client.url(&["v1", "registry", "extensions"])).await?;
    let rows: Vec<Vec<String>> = items(&answer.body)
        .iter()
        .map(|e| {
            ["name", "publisher", "created_at"]
                .iter()
                .map(|name| field(e, name))
                .collect()
        })
        .collect();
    Ok(Shown {
        text: table(&["NAME", "PUBLISHER", "CREATED"], &rows),
        json: answer.body,
    })
}

/// One extension with its versions.
///
/// # Errors
/// No such extension; the registry's refusal.
pub async fn extension(client: &Client, name: &str) -> anyhow::Result<Shown> {
    let answer = client.get(client.url(&["v1", "registry", "extensions", name])).await?;
    let e = &answer.body;
    let versions = e["versions"].as_array().map_or(&[][..], Vec::as_slice);
    let rows: Vec<Vec<String>> = versions.iter().map(version_row).collect();
    let text = format!(
        "{} (publisher {})\n{}",
        field(e, "name"),
        field(e, "publisher"),
        table(
            &["VERSION", "VERSION_ID", "CONTENT_HASH", "SIGNER", "PUBLISHED", "STATE"],
            &rows
        )
    );
    Ok(Shown {
        text,
        json: answer.body,
    })
}

fn version_row(v: &Value) -> Vec<String> {
    let state = match (v["revoked"].as_bool(), v["yanked"].as_bool()) {
        (Some(true), _) => "revoked",
        (_, Some(true)) => "yanked",
        _ => "installable",
    };
    let mut row: Vec<String> = ["version", "version_id", "content_hash", "signer", "published_at"]
        .iter()
        .map(|name| field(v, name))
        .collect();
    row.push(state.to_string());
    row
}

/// Yank a version (no new installs of it), or un-yank it with `undo`.
///
/// # Errors
/// No such version; a caller who does not publish that name; the
/// registry's refusal.
pub async fn yank(client: &Client, version: &VersionRef, undo: bool) -> anyhow::Result<Shown> {
    let mut url = version_url(client, version, "yank");
    if undo {
        url.query_pairs_mut().append_pair("undo", "true");
    }
    let answer = client.send(Method::POST, url, HeaderMap::new(), None).await?;
    let verb = if undo { "un-yanked" } else { "yanked" };
    Ok(Shown {
        text: format!("{verb} {} {}\n", version.name, version.version),
        json: answer.body,
    })
}

/// Revoke a version: the kill switch (no installs of it, and UI validation
/// stops answering for the installs on it).
///
/// # Errors
/// As [`yank`].
pub async fn revoke(client: &Client, version: &VersionRef) -> anyhow::Result<Shown> {
    let url = version_url(client, version, "revoke");
    let answer = client.send(Method::POST, url, HeaderMap::new(), None).await?;
    Ok(Shown {
        text: format!("revoked {} {}\n", version.name, version.version),
        json: answer.body,
    })
}

fn version_url(client: &Client, version: &VersionRef, action: &str) -> reqwest::Url {
    client.url(&[
        "v1",
        "registry",
        "extensions",
        &version.name,
        "versions",
        &version.version,
        action,
    ])
}
