//! Extension bundles for the Extension Runner: Manifest v2, content digests
//! and `bundle.tar.zst` archives. No Tokio, no Wasmtime: everything here is
//! plain synchronous code that the runner, the CLI and tests share.
//!
//! - [`digest`]: [`Digest`], the `sha256:<hex>` content hash of an archive
//!   (and of each file in it), plus a streaming [`digest::Hasher`].
//! - [`manifest`]: [`Manifest`] parsing and validation with field-precise
//!   [`ManifestError`]s, and endpoint routing ([`Manifest::resolve`]).
//! - [`archive`]: deterministic [`pack_dir`], and [`unpack`] / [`list`] that
//!   treat archives as hostile: bounded decompression, no links, no path
//!   escapes (attack catalogue B-04, B-05).
//! - [`signature`]: detached signatures over archives that `openssl` and
//!   `cosign` make and check: [`SigningKey`], [`TrustBundle`], [`verify`]
//!   with certificate chains (attack catalogue B-01).

pub mod archive;
pub mod digest;
pub mod manifest;
mod relpath;
pub mod signature;

pub use archive::{
    BUNDLE_FILE_NAME, BundleError, FileIndex, FileMeta, PackError, UnpackLimits, list, pack_dir, unpack,
};
pub use digest::{Digest, DigestError};
pub use manifest::{Endpoint, Manifest, ManifestError, Ui, World, check_name, component_path, normalise_capability};
pub use signature::{
    KeyAlgorithm, KeyError, Signer, SigningKey, TrustBundle, TrustError, VerifyError, verify, verify_expected,
};
