//! The registry role's settings: its database and its callers' tokens.

use std::path::Path;

use super::tokens::Tokens;
use crate::config::source::Source;

#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// `REGISTRY_DATABASE_URL`: `postgres://…`, `sqlite://PATH`, or a file
    /// path; default `$RUNNER_DATA_DIR/registry.db`.
    pub database_url: String,
    /// `REGISTRY_TOKENS`: who may call the registry, and for what.
    pub tokens: Tokens,
}

impl RegistrySettings {
    pub fn from_source(source: &Source, data_dir: &Path) -> RegistrySettings {
        let database_url = source
            .text("REGISTRY_DATABASE_URL")
            .map_or_else(|| data_dir.join("registry.db").display().to_string(), str::to_string);
        let tokens = source.text("REGISTRY_TOKENS").map_or_else(Tokens::default, |text| {
            Tokens::parse(text).unwrap_or_else(|why| {
                source.problem(format!("REGISTRY_TOKENS: {why}"));
                Tokens::default()
            })
        });
        RegistrySettings { database_url, tokens }
    }
}
