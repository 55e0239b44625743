//! What an execution grant binds, and how it is held against the envelope
//! it came with (catalogue G-02).

use serde::{Deserialize, Serialize};

use crate::envelope::Envelope;
use crate::error::{ErrorCode, Failure};

/// The claims of an execution grant (spec "Execution grants"). Other
/// claims a gateway adds (`iat`, `jti`, `iss`) are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub tenant: String,
    pub extension: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `sha256:<hex>` of the bundle the grant is for.
    pub content_hash: String,
    /// The install's granted capabilities; they replace the envelope's
    /// `providers`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The install's egress list; absent or empty reaches no host.
    #[serde(default)]
    pub egress: Vec<String>,
    /// When set, the envelope's `context.request_id` must be this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// Holds the grant against `envelope`; when they match, the envelope's
    /// `providers` and `egress` become the grant's, so capabilities and
    /// egress come from the grant only.
    ///
    /// # Errors
    /// [`ErrorCode::GrantMismatch`] naming every envelope field the grant
    /// disagrees with; [`ErrorCode::GrantInvalid`] for a claim that is not
    /// a content hash, capability or egress pattern.
    pub fn apply(&self, envelope: &mut Envelope) -> Result<(), Failure> {
        let claim = |name: &str, why: String| {
            Failure::new(
                ErrorCode::GrantInvalid,
                format!("the execution grant's `{name}` claim is invalid: {why}"),
            )
        };
        let content_hash =
            ext_bundle::Digest::parse(self.content_hash.trim()).map_err(|e| claim("content_hash", e.to_string()))?;
        let capabilities = crate::host::grants::canonical_providers(&self.capabilities)
            .map_err(|(index, why)| claim(&format!("capabilities[{index}]"), why))?;
        let egress = crate::host::http::canonical_egress(&self.egress)
            .map_err(|(index, why)| claim(&format!("egress[{index}]"), why))?;

        let mut mismatched = Vec::new();
        let mut check = |field: &'static str, same: bool| {
            if !same {
                mismatched.push(field);
            }
        };
        check("context.tenant_id", self.tenant == envelope.tenant_id);
        check("context.extension_id", self.extension == envelope.extension_id);
        check("context.install_id", self.install_id == envelope.install_id);
        check("context.version_id", self.version_id == envelope.version_id);
        check("context.content_hash", content_hash == envelope.content_hash);
        check(
            "context.request_id",
            self.request_id.is_none() || self.request_id == envelope.request_id,
        );
        check(
            "providers",
            envelope
                .providers
                .as_deref()
                .is_none_or(|asked| same_set(asked, &capabilities)),
        );
        check(
            "egress",
            envelope.egress.as_deref().is_none_or(|asked| same_set(asked, &egress)),
        );
        if !mismatched.is_empty() {
            return Err(Failure::new(
                ErrorCode::GrantMismatch,
                format!(
                    "the execution grant does not match the envelope's {}",
                    mismatched
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        envelope.providers = Some(capabilities);
        envelope.egress = Some(egress);
        Ok(())
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<std::collections::BTreeSet<_>>() == b.iter().collect::<std::collections::BTreeSet<_>>()
}
