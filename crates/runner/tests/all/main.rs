//! The one integration-test binary of ext-runner (each extra binary would
//! relink Wasmtime). Tests name the attack-catalogue row they cover.

mod authoring;
mod bundles;
mod cache;
mod cli;
mod compile;
mod connections;
mod cpu;
mod docs;
mod egress;
mod example;
mod execute;
mod gateway;
mod grants;
mod guest_metrics;
mod h2raw;
mod idempotency;
mod limits;
mod observability;
mod ops;
mod product;
mod quota;
mod registry;
mod registry_cli;
mod revocation;
mod s3;
mod secrets;
mod signing;
mod socket;
mod storage;
mod support;
mod typescript;
mod ui;
mod ui_proxy;
mod wasi_http;
