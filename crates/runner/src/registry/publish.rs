//! Publishing: a bundle in, the same checks the runner applies at load, the
//! signature verified against `SIGNING_TRUST_BUNDLE` (seed: verify at
//! publish), the files written to the bundle store under its key layout,
//! the version recorded — all or nothing.
//!
//! Order: everything that can refuse without writing (archive, manifest,
//! components, scope, signature, an existing version) first; then the
//! store's objects (manifest, certificates, signature, bundle last, so a
//! runner that sees the bundle sees its signature); then the database row.
//! When the row cannot be written, the objects this publish created are
//! deleted again, so a later publish finds nothing to trip over.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use ext_bundle::{Digest, Manifest, Signer, UnpackLimits};
use ext_registry::{NewVersion, Published};

use super::Registry;
use super::tokens::Caller;
use crate::error::{ErrorCode, Failure};
use crate::store::object::PutOutcome;

/// Longest `x-ext-certificates` header (base64 of a PEM chain): a chain of
/// a few certificates is a few KiB.
pub const MAX_CERTIFICATES_HEADER_BYTES: usize = 64 * 1024;

/// What a publish is given besides the archive.
pub struct Signature {
    /// `x-ext-signature`: base64 of the DER signature (`ext-runner sign`'s file).
    pub signature: Option<String>,
    /// `x-ext-certificates`: base64 of the PEM certificate chain.
    pub certificates_b64: Option<String>,
}

/// The signer as a namespace is bound to it: a trusted key by fingerprint,
/// a certificate by subject (so a renewed certificate of the same subject
/// keeps publishing).
pub fn signer_identity(signer: &Signer) -> String {
    match signer {
        Signer::Key { fingerprint } => format!("key:{fingerprint}"),
        Signer::Certificate { subject, .. } => format!("certificate:{subject}"),
    }
}

fn rejected(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::BundleRejected, message)
}

/// Validate the archive as the runner will (unpacking, manifest, the
/// components' imports and worlds) without compiling anything; returns its
/// manifest and the manifest's own bytes.
fn check_archive(archive: &[u8]) -> Result<(Manifest, Vec<u8>), Failure> {
    let work =
        tempfile::tempdir().map_err(|e| Failure::new(ErrorCode::Internal, format!("temporary directory: {e}")))?;
    ext_bundle::unpack(archive, work.path(), &UnpackLimits::default())
        .map_err(|e| rejected(format!("not a valid bundle: {e} [{}]", e.code())))?;
    let manifest_bytes = std::fs::read(work.path().join(ext_bundle::manifest::MANIFEST_FILE_NAME))
        .map_err(|e| rejected(format!("manifest.json: {e}")))?;
    let manifest = Manifest::from_slice(&manifest_bytes).map_err(|e| rejected(format!("manifest.json: {e}")))?;
    crate::imports::check_components(work.path()).map_err(|e| rejected(format!("{e:#}")))?;
    Ok((manifest, manifest_bytes))
}

impl Registry {
    /// Publish `archive` as `caller`.
    ///
    /// # Errors
    /// 422 for a bundle or signature the runner would refuse, 403 outside the
    /// caller's scope, 409 for other content under a published version or a
    /// store object with other bytes, 503 when the store or database fail.
    pub async fn publish(&self, caller: &Caller, archive: Bytes, signature: Signature) -> Result<Published, Failure> {
        let checked = archive.clone();
        let (manifest, manifest_bytes) = tokio::task::spawn_blocking(move || check_archive(&checked))
            .await
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("bundle check stopped: {e}")))??;
        let name = manifest.name.clone();
        let version = ext_registry::names::parse_version(&manifest.version.to_string())
            .map_err(|why| rejected(format!("manifest.json: version: {why}")))?;
        if !caller.may_publish(&name) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!("token `{}` may not publish `{name}`", caller.name),
            ));
        }
        let Signature {
            signature,
            certificates_b64,
        } = signature;
        let signature = signature.ok_or_else(|| {
            Failure::new(
                ErrorCode::SignatureRejected,
                "x-ext-signature is missing: every published bundle is signed (`ext-runner sign`)",
            )
        })?;
        let certificates = certificates_b64.map(decode_certificates).transpose()?;
        let signer = ext_bundle::verify(
            &archive,
            &signature,
            certificates.as_deref(),
            &self.trust,
            SystemTime::now(),
        )
        .map_err(|e| {
            Failure::new(
                ErrorCode::SignatureRejected,
                format!(
                    "the signature does not verify against SIGNING_TRUST_BUNDLE: {e} [{}]",
                    e.code()
                ),
            )
        })?;
        let digest = Digest::of(&archive);
        let content_hash = digest.to_string();
        // Refuse a conflicting version before writing anything.
        if let Some(existing) = self.db.version(&name, &version.to_string()).await? {
            if existing.content_hash == content_hash {
                return Ok(Published::Existing(existing));
            }
            return Err(super::failure(ext_registry::Error::VersionExists {
                extension: name,
                version: version.to_string(),
                existing: existing.content_hash,
            }));
        }
        // The manifest as published; installs are checked against it.
        let manifest_text =
            String::from_utf8(manifest_bytes.clone()).map_err(|_| rejected("manifest.json: not UTF-8 text"))?;
        let keys = self.objects.keys(&digest, "", &name);
        let mut uploads = vec![(keys.manifest, Bytes::from(manifest_bytes))];
        if let Some(pem) = certificates {
            uploads.push((keys.certificates, Bytes::from(pem)));
        }
        uploads.push((keys.signature, Bytes::from(signature)));
        let size_bytes = archive.len() as u64;
        uploads.push((keys.bundle, archive));
        let created = self.upload(uploads).await?;
        let new = NewVersion {
            extension: name,
            version,
            content_hash,
            signer: signer_identity(&signer),
            size_bytes,
            manifest: manifest_text,
            actor: caller.name.clone(),
        };
        match self.db.publish(&new).await {
            Ok(published) => Ok(published),
            Err(e) => {
                self.take_back(&created).await;
                Err(super::failure(e))
            }
        }
    }

    /// Put each object unless present, in order; returns the keys this call
    /// created. On a failure the ones created so far are taken back.
    async fn upload(&self, uploads: Vec<(String, Bytes)>) -> Result<Vec<String>, Failure> {
        let mut created = Vec::new();
        for (key, bytes) in uploads {
            match self.objects.put_if_absent(&key, bytes).await {
                Ok(PutOutcome::Created) => created.push(key),
                Ok(PutOutcome::AlreadyPresent) => {}
                Err(e) => {
                    self.take_back(&created).await;
                    let code = match e {
                        crate::store::object::ObjectError::Conflict { .. } => ErrorCode::ObjectConflict,
                        _ => ErrorCode::BundleUnavailable,
                    };
                    return Err(Failure::new(code, e.to_string()));
                }
            }
        }
        Ok(created)
    }

    /// Delete objects a failed publish wrote (best effort, logged).
    async fn take_back(&self, keys: &[String]) {
        for key in keys.iter().rev() {
            if let Err(e) = self.objects.delete(key).await {
                tracing::warn!(key, error = %e, "could not remove an object of a failed publish");
            }
        }
    }
}

/// `x-ext-certificates`: base64 of PEM text.
fn decode_certificates(b64: String) -> Result<String, Failure> {
    let bad = |why: &str| Failure::new(ErrorCode::SignatureRejected, format!("x-ext-certificates: {why}"));
    if b64.len() > MAX_CERTIFICATES_HEADER_BYTES {
        return Err(bad(&format!("longer than {MAX_CERTIFICATES_HEADER_BYTES} bytes")));
    }
    let bytes = BASE64
        .decode(b64.trim())
        .map_err(|_| bad("not base64 (of a PEM certificate chain)"))?;
    String::from_utf8(bytes).map_err(|_| bad("not PEM text"))
}
