//! `registry publish`: upload a signed bundle to `POST /v1/registry/bundles`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};

use super::client::Client;
use super::output::{Shown, field};
use crate::cli::bundle::{PROGRESS_BAR_MIN_BYTES, upload_bar};

/// Bytes handed to the connection at a time while a progress bar follows
/// the upload.
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// Arguments of `registry publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The `bundle.tar.zst` to publish.
    pub bundle: PathBuf,
    /// Its detached signature (base64 DER, as `ext-runner sign` writes it); sent as `x-ext-signature`.
    #[arg(long = "sig", value_name = "SIGFILE")]
    pub signature: PathBuf,
    /// The signing certificate chain (PEM, leaf first) of a certificate signature; sent
    /// base64-encoded as `x-ext-certificates`.
    #[arg(long = "certs", value_name = "PEMFILE")]
    pub certificates: Option<PathBuf>,
}

/// Upload the bundle with its signature (and certificate chain). With
/// `progress`, a progress bar on stderr follows uploads of at least
/// [`PROGRESS_BAR_MIN_BYTES`].
///
/// # Errors
/// A file that cannot be read (named); the registry's refusal (422 for a
/// bundle or signature it does not accept, 409 for other bytes under a
/// published version); no registry at the URL.
pub async fn publish(client: &Client, args: &PublishArgs, progress: bool) -> anyhow::Result<Shown> {
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let archive = Bytes::from(read(&args.bundle)?);
    let signature = String::from_utf8(read(&args.signature)?)
        .with_context(|| format!("{}: not a base64 signature", args.signature.display()))?;
    let mut headers = HeaderMap::new();
    let signature = HeaderValue::from_str(signature.trim())
        .with_context(|| format!("{}: not a base64 signature", args.signature.display()))?;
    headers.insert("x-ext-signature", signature);
    if let Some(path) = &args.certificates {
        let pem = read(path)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        headers.insert(
            "x-ext-certificates",
            HeaderValue::from_str(&encoded).context("encoding --certs")?,
        );
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/zstd"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(archive.len()));

    let bar = (progress && archive.len() >= PROGRESS_BAR_MIN_BYTES).then(|| {
        let name = args.bundle.display().to_string();
        upload_bar(&name, archive.len())
    });
    let body = upload_body(archive, bar.clone());
    let url = client.url(&["v1", "registry", "bundles"]);
    let answer = client.upload(url, headers, body).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let answer = answer?;
    let state = match answer.status {
        StatusCode::CREATED => "published (new)",
        _ => "already published (the same bytes)",
    };
    let v = &answer.body;
    let text = format!(
        "{state}: {} {}\n  version_id:   {}\n  content_hash: {}\n  signer:       {}\n",
        field(v, "name"),
        field(v, "version"),
        field(v, "version_id"),
        field(v, "content_hash"),
        field(v, "signer"),
    );
    Ok(Shown {
        json: answer.body,
        text,
    })
}

/// The request body: the archive in one piece, or with `bar`, in chunks of
/// [`UPLOAD_CHUNK_BYTES`] that move the bar as the connection takes them
/// (the stream is polled only as fast as the bytes go out).
fn upload_body(archive: Bytes, bar: Option<ProgressBar>) -> reqwest::Body {
    match bar {
        None => reqwest::Body::from(archive),
        Some(bar) => reqwest::Body::wrap_stream(futures_util::stream::iter(chunks(&archive).into_iter().map(
            move |chunk| {
                bar.inc(chunk.len() as u64);
                Ok::<_, Infallible>(chunk)
            },
        ))),
    }
}

/// `archive` cut into pieces of at most [`UPLOAD_CHUNK_BYTES`], in order,
/// sharing its memory.
fn chunks(archive: &Bytes) -> Vec<Bytes> {
    (0..archive.len())
        .step_by(UPLOAD_CHUNK_BYTES)
        .map(|start| archive.slice(start..archive.len().min(start + UPLOAD_CHUNK_BYTES)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_archive_in_order() {
        for len in [
            0,
            1,
            UPLOAD_CHUNK_BYTES - 1,
            UPLOAD_CHUNK_BYTES,
            2 * UPLOAD_CHUNK_BYTES + 7,
        ] {
            let archive = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let pieces = chunks(&archive);
            assert_eq!(pieces.len(), len.div_ceil(UPLOAD_CHUNK_BYTES), "{len}");
            assert!(
                pieces.iter().all(|p| !p.is_empty() && p.len() <= UPLOAD_CHUNK_BYTES),
                "{len}"
            );
            assert_eq!(pieces.concat(), archive.to_vec(), "{len}");
        }
    }
}
