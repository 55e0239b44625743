//! `exec`: run one handler locally, without a server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use ext_bundle::{Digest, UnpackLimits};

use crate::config::Config;
use crate::envelope::Envelope;
use crate::execute::{GuestResponse, Runner};

/// Arguments of `exec`.
pub struct ExecArgs {
    pub target: PathBuf,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub tenant: String,
    pub timeout_ms: Option<u64>,
}

/// Run one handler locally, no server: pack the directory (or take the
/// archive), publish it to a throwaway store and execute once.
///
/// # Errors
/// Any packing, loading or execution failure, with its code.
pub async fn exec(args: ExecArgs) -> anyhow::Result<GuestResponse> {
    let archive = if args.target.is_dir() {
        ext_bundle::pack_dir(&args.target).with_context(|| format!("packing {}", args.target.display()))?
    } else {
        std::fs::read(&args.target).with_context(|| format!("reading {}", args.target.display()))?
    };
    let (_, manifest) = ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", args.target.display()))?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = Config::for_dir(work.path());
    // A local run of the author's own files: there is no signature to check.
    config.bundles.signing_required = false;
    let runner = Arc::new(Runner::new(config)?);
    let digest = Digest::of(&archive);
    let keys = runner.bundle_objects().keys(&digest, &args.tenant, &manifest.name);
    runner
        .bundle_objects()
        .put_if_absent(&keys.bundle, archive.into())
        .await
        .context("storing the bundle in the temporary store")?;
    let envelope_json = serde_json::json!({
        "context": {"tenant_id": args.tenant, "extension_id": manifest.name, "content_hash": digest.to_string()},
        "http": {
            "method": args.method,
            "path": args.path,
            "headers": args.headers.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
            "body_b64": args.body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        },
        "limits": {"timeout_ms": args.timeout_ms},
    });
    let envelope = Envelope::parse(
        envelope_json.to_string().as_bytes(),
        runner.config().limits.max_request_bytes,
    )
    .map_err(|f| anyhow::anyhow!("{}: {}", f.code.as_str(), f.message))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match runner.execute(&envelope, &request_id).await {
        Ok(response) => Ok(response),
        Err(f) => bail!("{} ({}): {}", f.code.as_str(), f.code.status().as_u16(), f.message),
    }
}

/// `ext-runner exec`.
#[derive(clap::Args)]
pub struct ExecCommand {
    /// A bundle.tar.zst or an extension directory.
    target: PathBuf,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Request header as name:value (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Request body: literal text, or @file to read a file.
    #[arg(long)]
    body: Option<String>,
    /// Tenant id to run as.
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Execution time limit in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

impl ExecCommand {
    /// Run once and print status, headers and body (base64 when binary).
    ///
    /// # Errors
    /// A malformed `--header` or unreadable `--body @file`, or as [`exec`].
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let _logging = super::logging::init(crate::config::LogFormat::Pretty, None);
        let args = self.args()?;
        let response = runtime.block_on(exec(args))?;
        println!("status: {}", response.status);
        for (name, value) in &response.headers {
            println!("{name}: {value}");
        }
        println!();
        let body = response.body.unwrap_or_default();
        match std::str::from_utf8(&body) {
            Ok(text) => println!("{text}"),
            Err(_) => println!(
                "(binary body, base64) {}",
                base64::engine::general_purpose::STANDARD.encode(&body)
            ),
        }
        Ok(())
    }

    fn args(self) -> anyhow::Result<ExecArgs> {
        let headers = self
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| anyhow::anyhow!("--header `{h}`: expected NAME:VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let body = match self.body {
            Some(text) => match text.strip_prefix('@') {
                Some(file) => Some(std::fs::read(file).map_err(|e| anyhow::anyhow!("--body @{file}: {e}"))?),
                None => Some(text.into_bytes()),
            },
            None => None,
        };
        Ok(ExecArgs {
            target: self.target,
            method: self.method,
            path: self.path,
            headers,
            body,
            tenant: self.tenant,
            timeout_ms: self.timeout_ms,
        })
    }
}
