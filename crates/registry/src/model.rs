//! The registry's records as its callers see them (serialised as the HTTP
//! answers show them), and the inputs that create them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A point in time, stored as unix milliseconds and shown as RFC 3339.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, to the millisecond.
    pub fn now() -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    /// This time in RFC 3339, to the millisecond (`2026-12-06T02:00:00.000Z`).
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.system_time()).to_string()
    }

    /// This time as a [`SystemTime`] (before 1970 clamps to 1970).
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.system_time()))
    }
}

/// An extension: a name under its publisher's namespace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Extension {
    pub name: String,
    pub publisher: String,
    pub created_at: Timestamp,
}

/// A published version. Immutable but for `yanked` and `revoked`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Version {
    pub version_id: String,
    #[serde(skip)]
    pub extension: String,
    pub version: String,
    pub content_hash: String,
    pub signer: String,
    pub size_bytes: u64,
    /// The manifest as published (JSON text).
    #[serde(skip)]
    pub manifest: String,
    pub published_at: Timestamp,
    pub published_by: String,
    /// No new installs; existing ones keep running it.
    pub yanked: bool,
    /// Nothing runs or serves it (the kill switch), whether by the version
    /// itself or by its signer.
    pub revoked: bool,
}

/// What a publish records.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub extension: String,
    pub version: semver::Version,
    pub content_hash: String,
    pub signer: String,
    pub size_bytes: u64,
    pub manifest: String,
    pub actor: String,
}

/// What a publish did.
#[derive(Clone, Debug, PartialEq)]
pub enum Published {
    /// A new version.
    Created(Version),
    /// The same content was published before: nothing changed.
    Existing(Version),
}

impl Published {
    /// The version, new or not.
    pub fn version(&self) -> &Version {
        match self {
            Published::Created(v) | Published::Existing(v) => v,
        }
    }
}

/// A tenant's install of an extension at one version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Install {
    /// Stays the same across upgrades and rollbacks; a reinstall after an
    /// uninstall gets a new one.
    pub install_id: String,
    pub tenant: String,
    pub extension: String,
    pub version: String,
    pub version_id: String,
    pub content_hash: String,
    /// The capabilities granted: a subset of the manifest's.
    pub capabilities: Vec<String>,
    pub config: BTreeMap<String, String>,
    /// Egress hosts allowed: a subset of the manifest's
    /// `network.allowed_hosts` when it has a `network`; any patterns for a
    /// manifest without one (upstream manifests).
    pub egress: Vec<String>,
    pub enabled: bool,
    /// Counts the install's changes; the precondition of a conditional edit.
    pub revision: i64,
    /// The names of its secrets (the values are sealed and never shown).
    pub secret_names: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The state an install change asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct InstallSpec {
    pub version_id: String,
    pub capabilities: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub egress: Vec<String>,
    pub enabled: bool,
}

/// What must hold before an install change applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: the change applies to whatever is there.
    None,
    /// The tenant has no install of the extension.
    Absent,
    /// The install is at this revision.
    Revision(i64),
}

/// What an install change was, as its history records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Install,
    Upgrade,
    Rollback,
    Configure,
    Enable,
    Disable,
    Secrets,
    Uninstall,
    /// An uninstall that also removes the install's data elsewhere (KV):
    /// recorded right after its `Uninstall`.
    Purge,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Rollback => "rollback",
            Action::Configure => "configure",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Secrets => "secrets",
            Action::Uninstall => "uninstall",
            Action::Purge => "purge",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Action> {
        [
            Action::Install,
            Action::Upgrade,
            Action::Rollback,
            Action::Configure,
            Action::Enable,
            Action::Disable,
            Action::Secrets,
            Action::Uninstall,
            Action::Purge,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// A purge the registry has recorded and the caller must carry out: remove
/// the data of (`tenant`, `extension`) in the runner's KV store, then call
/// [`Database::purge_done`](crate::Database::purge_done).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingPurge {
    pub tenant: String,
    pub extension: String,
    /// The install whose data goes.
    pub install_id: String,
    /// The install this call removed; `None` when it finishes the purge of
    /// an earlier uninstall.
    pub uninstalled: Option<Install>,
}

/// One install's sealed secrets as stored, for re-sealing them under a new
/// secrets key. `Debug` shows the sealed text's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecrets {
    pub install_id: String,
    pub tenant: String,
    pub extension: String,
    /// The runner's secret envelope (JSON), as read.
    pub sealed: String,
}

impl std::fmt::Debug for SealedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecrets")
            .field("install_id", &self.install_id)
            .field("tenant", &self.tenant)
            .field("extension", &self.extension)
            .field("sealed_bytes", &self.sealed.len())
            .finish()
    }
}

/// What an install change did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub install: Install,
    /// `None` when the install already was in the asked-for state (nothing
    /// recorded, the revision unchanged).
    pub action: Option<Action>,
}

/// One change in a tenant's install of an extension, with the state after it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub seq: i64,
    pub install_id: String,
    pub action: Action,
    pub version: String,
    pub version_id: String,
    pub capabilities: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub egress: Vec<String>,
    pub enabled: bool,
    /// Who made the change (a token's name).
    pub actor: String,
    pub at: Timestamp,
}

/// One execution, as the gateway logs it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Execution {
    pub request_id: String,
    #[serde(skip)]
    pub tenant: String,
    pub extension: String,
    pub version: String,
    pub endpoint: String,
    pub status: u16,
    pub error_code: Option<String>,
    pub duration_ms: u64,
    /// The limit that ended it (`timeout`, `memory`, …), if one did.
    pub limit_hit: Option<String>,
    pub at: Timestamp,
}

/// One audit log entry: who did what to what, when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
}
