//! ext-runner: runs extension handlers as sandboxed WebAssembly components
//! and serves them over `POST /v1/execute`.
//!
//! Main modules:
//! - [`config`]: one validated configuration (defaults < env < flags);
//! - [`serve`]: the process: bind the listeners, serve, drain, stop;
//! - [`server`]: the routers and `serve(listener, state, shutdown)` for one listener;
//! - [`execute`]: the pipeline shared by the server, `exec` and benches;
//! - [`roles`]: `RUNNER_ROLES`, which roles this process runs;
//! - [`registry`]: the registry role's routes (publish, versions, installs) over `ext-registry`;
//! - [`imports`]: the component import and world checks `pack`, `publish` and the registry share;
//! - [`quota`]: tenant concurrency caps, rate limit and CPU budget (memory or Redis);
//! - [`cpu`]: the guest threads and the tenants' fair share of them;
//! - [`idempotency`]: `x-idempotency-key`, the replay store (one answer per key, one run at a time);
//! - [`envelope`]: the execute envelope and its validation;
//! - [`engine`]: the shared Wasmtime engine, compile cache and limits;
//! - [`host`]: the guest contract's host side (capabilities, WASI subset);
//! - [`store`]: bundle store and the verified, unpacked bundle cache;
//! - [`ui`]: the extensions' iframe UI assets (`/ext-ui/…`);
//! - [`cli`]: the command line (one clap `Args` per command) and the functions behind it;
//! - [`scaffold`]: `new`, extension projects from the embedded templates;
//! - [`devloop`]: what `serve --dev` and `dev` share, and `dev`'s rebuild loop;
//! - [`error`]: error codes, [`error::Failure`] and the one mapping to HTTP;
//! - [`report`]: what one execution used;
//! - [`limits`]: every limit and its default;
//! - [`metrics`]: the Prometheus registry behind `/metrics`;
//! - [`openapi`]: the OpenAPI description served at `/openapi.json`;
//! - [`otlp`]: OTLP/HTTP trace export of request spans.

pub mod cli;
pub mod config;
pub mod cpu;
pub mod devloop;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod execute;
pub mod gateway;
pub mod grant;
pub mod host;
pub mod idempotency;
pub mod imports;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod otlp;
pub mod quota;
pub mod registry;
pub mod report;
pub mod revocation;
pub mod roles;
pub mod scaffold;
pub mod serve;
pub mod server;
pub mod store;
pub mod ui;

pub use config::Config;

/// `N` bytes from the operating system's CSPRNG (keys, nonces, span ids).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore as _;
    let mut bytes = [0u8; N];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    bytes
}
pub use execute::{GuestResponse, Runner};
