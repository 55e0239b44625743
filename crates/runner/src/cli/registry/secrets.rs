//! `registry secrets`: replace an install's secrets with a JSON object of
//! names → values read from a file (or stdin), never from the command line,
//! where values would stay in the shell's history and the process list.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::client::Client;
use super::installs::InstallRef;
use super::output::Shown;
use crate::registry::routes::MAX_JSON_BODY_BYTES;

/// Arguments of `registry secrets`.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    pub install: InstallRef,
    /// A JSON object of secret names to string values (`-`: standard input). They
    /// replace the install's secrets, are sealed by the registry and never shown again.
    #[arg(long)]
    pub file: PathBuf,
}

/// The secrets in `text` (from `origin`), each value a string.
///
/// # Errors
/// Not a JSON object of strings, naming `origin` and the entry.
pub fn parse_secrets(origin: &str, text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{origin}: not JSON"))?;
    let Some(object) = value.as_object() else {
        bail!("{origin}: must be a JSON object of secret names to string values");
    };
    object
        .iter()
        .map(|(name, value)| match value.as_str() {
            Some(text) => Ok((name.clone(), text.to_string())),
            None => bail!("{origin}: secret `{name}` must be a string"),
        })
        .collect()
}

fn read_file(args: &SecretsArgs) -> anyhow::Result<(String, String)> {
    let limit = MAX_JSON_BODY_BYTES as u64 + 1;
    let mut text = String::new();
    let origin = if args.file.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context("standard input")?;
        "standard input".to_string()
    } else {
        let origin = args.file.display().to_string();
        std::fs::File::open(&args.file)
            .and_then(|file| file.take(limit).read_to_string(&mut text))
            .with_context(|| origin.clone())?;
        origin
    };
    if text.len() > MAX_JSON_BODY_BYTES {
        bail!("{origin}: over {MAX_JSON_BODY_BYTES} bytes, the registry's JSON body cap");
    }
    Ok((origin, text))
}

/// `PUT …/installs/{name}/secrets`.
///
/// # Errors
/// The file (named), or the registry's refusal (no such install, no
/// secrets key, too many or too large values).
pub async fn put_secrets(client: &Client, args: &SecretsArgs) -> anyhow::Result<Shown> {
    let (origin, text) = read_file(args)?;
    let secrets = parse_secrets(&origin, &text)?;
    let InstallRef { name, tenant } = &args.install;
    let url = client.url(&["v1", "registry", "tenants", tenant, "installs", name, "secrets"]);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&secrets)?;
    client.send(Method::PUT, url, headers, Some(body.into())).await?;
    let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
    Ok(Shown {
        json: serde_json::json!({"tenant": tenant, "extension": name, "secret_names": names}),
        text: format!(
            "stored {} secret(s) for {name}, tenant {tenant}: {} (sealed; values are never shown)\n",
            names.len(),
            names.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_an_object_of_strings_named_by_origin() {
        let parsed = parse_secrets("s.json", r#"{"api-key": "k", "b": ""}"#).unwrap();
        assert_eq!(parsed["api-key"], "k");
        for (text, wanted) in [
            ("[1]", "s.json: must be a JSON object"),
            (r#"{"n": 1}"#, "s.json: secret `n` must be a string"),
            ("{", "s.json: not JSON"),
        ] {
            let error = parse_secrets("s.json", text).unwrap_err().to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
