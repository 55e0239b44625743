//! Execution grants (spec "Execution grants", catalogue G-02): a gateway
//! signs, per request, which tenant, extension, install, version, content
//! hash, capabilities and egress an envelope is for; a runner with
//! `RUNNER_GRANT_KEYS` refuses envelopes without a matching grant and takes
//! capabilities and egress from the grant. Without the setting the runner
//! believes the envelope, as upstream gateways expect.

pub mod claims;
pub mod keys;

use std::path::PathBuf;
use std::sync::Arc;

pub use self::claims::Claims;
pub use self::keys::{GrantKeys, GrantSigner, MAX_GRANT_TTL_SECS};
use crate::config::source::Source;
use crate::envelope::Envelope;
use crate::error::{ErrorCode, Failure};

/// The request header that carries the grant (a compact JWS).
pub const GRANT_HEADER: &str = "x-ext-grant";

/// `RUNNER_GRANT_KEYS`: `off` believes envelopes; otherwise a
/// comma-separated list of JWKS files whose Ed25519 keys grants must be
/// signed with (several files or keys while one rotates). Unset, it is
/// `off`, except in a process that runs the gateway and the runner role
/// outside `--dev`: there grants are required with a key pair the process
/// makes at start-up and whose private half it never keeps (its gateway
/// hands grants to its runner directly), so `/v1/execute` refuses every
/// envelope that did not come through the gateway.
#[derive(Clone, Debug, Default)]
pub struct GrantSettings {
    pub files: Vec<PathBuf>,
    pub keys: Option<Arc<GrantKeys>>,
}

impl GrantSettings {
    pub fn from_source(source: &Source, roles: crate::roles::Roles) -> GrantSettings {
        let Some(value) = source.text("RUNNER_GRANT_KEYS").map(str::trim) else {
            if roles.gateway && roles.runner && !source.dev() {
                return GrantSettings {
                    files: Vec::new(),
                    keys: Some(Arc::new(GrantKeys::process_made())),
                };
            }
            return GrantSettings::default();
        };
        if value.eq_ignore_ascii_case("off") || value.is_empty() {
            return GrantSettings::default();
        }
        let files: Vec<PathBuf> = value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        let texts: Result<Vec<(String, String)>, String> = files
            .iter()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|text| (path.display().to_string(), text))
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect();
        let keys = texts
            .and_then(|texts| GrantKeys::from_jwks(&texts).map_err(|e| format!("{e:#}")))
            .map_err(|why| source.problem(format!("RUNNER_GRANT_KEYS: {why}")))
            .ok()
            .map(Arc::new);
        GrantSettings { files, keys }
    }
}

/// When grants are required, the one in `headers` checked and applied to
/// `envelope` at `now` (seconds since the epoch).
///
/// # Errors
/// [`ErrorCode::GrantInvalid`] for a missing, unverifiable or expired
/// grant; [`ErrorCode::GrantMismatch`] for one made for another envelope.
pub fn enforce(keys: &GrantKeys, headers: &http::HeaderMap, envelope: &mut Envelope, now: u64) -> Result<(), Failure> {
    let token = headers
        .get(GRANT_HEADER)
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::GrantInvalid,
                format!("this runner requires an execution grant in the `{GRANT_HEADER}` header"),
            )
        })?
        .to_str()
        .map_err(|_| Failure::new(ErrorCode::GrantInvalid, "the execution grant is not ASCII".to_string()))?;
    keys.verify(token.trim(), now)?.apply(envelope)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn signer() -> GrantSigner {
        let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::Ed25519).to_pkcs8_pem();
        GrantSigner::from_pem(pem.as_bytes()).unwrap()
    }

    fn keys(signers: &[&GrantSigner]) -> GrantKeys {
        let texts: Vec<(String, String)> = signers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("k{i}.json"), s.jwks().unwrap()))
            .collect();
        GrantKeys::from_jwks(&texts).unwrap()
    }

    fn claims(now: u64) -> Claims {
        Claims {
            tenant: "t1".into(),
            extension: "com.example.hello".into(),
            install_id: Some("i1".into()),
            version_id: Some("v1".into()),
            content_hash: HASH.into(),
            capabilities: vec!["cap:storage.kv".into()],
            egress: vec!["https://api.example.com".into()],
            request_id: None,
            exp: now + 60,
        }
    }

    fn envelope(extra: &str) -> Envelope {
        let json = format!(
            r#"{{"context": {{"tenant_id": "t1", "extension_id": "com.example.hello", "install_id": "i1",
                "version_id": "v1", "content_hash": "{HASH}"}}, "http": {{"method": "GET", "path": "/"}}{extra}}}"#
        );
        Envelope::parse(json.as_bytes(), 1024).unwrap()
    }

    fn headers(token: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        map.insert(GRANT_HEADER, token.parse().unwrap());
        map
    }

    #[test]
    fn g02_a_matching_grant_sets_capabilities_and_egress() {
        let now = now_secs();
        let signer = signer();
        let token = signer.sign(&claims(now)).unwrap();
        let mut env = envelope("");
        enforce(&keys(&[&signer]), &headers(&token), &mut env, now).unwrap();
        assert_eq!(env.providers.as_deref(), Some(&["cap:storage.kv".to_string()][..]));
        assert_eq!(
            env.egress.as_deref(),
            Some(&["https://api.example.com".to_string()][..])
        );
        // Keys from two files: a rotation in progress accepts either.
        let other = signer_and_token(now);
        enforce(&keys(&[&signer, &other.0]), &headers(&other.1), &mut envelope(""), now).unwrap();
    }

    fn signer_and_token(now: u64) -> (GrantSigner, String) {
        let signer = signer();
        let token = signer.sign(&claims(now)).unwrap();
        (signer, token)
    }

    #[test]
    fn g02_missing_forged_unknown_and_expired_grants_are_invalid() {
        let now = now_secs();
        let (signer, token) = signer_and_token(now);
        let keys = keys(&[&signer]);
        let code = |headers: http::HeaderMap, now: u64| enforce(&keys, &headers, &mut envelope(""), now).unwrap_err();
        let missing = code(http::HeaderMap::new(), now);
        assert_eq!(missing.code, ErrorCode::GrantInvalid);
        assert!(missing.message.contains(GRANT_HEADER), "{}", missing.message);

        let (_, stranger) = signer_and_token(now);
        assert!(code(headers(&stranger), now).message.contains("unknown key"));

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = {
            use base64::Engine as _;
            let mut c = claims(now);
            c.tenant = "t2".into();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        };
        parts[1] = &forged_claims;
        let forged = code(headers(&parts.join(".")), now);
        assert_eq!(forged.code, ErrorCode::GrantInvalid);
        assert!(forged.message.contains("bad signature"), "{}", forged.message);

        let mut old = claims(now);
        old.exp = now - 120;
        let expired = code(headers(&signer.sign(&old).unwrap()), now);
        assert!(expired.message.contains("expired"), "{}", expired.message);

        let mut long = claims(now);
        long.exp = now + MAX_GRANT_TTL_SECS + 60;
        let long = code(headers(&signer.sign(&long).unwrap()), now);
        assert!(long.message.contains("ahead"), "{}", long.message);
        assert_eq!(code(headers("not-a-jws"), now).code, ErrorCode::GrantInvalid);

        // The same signature with the group order added to its scalar is
        // a second encoding of it: refused, so a grant has one form.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut signature = b64.decode(parts[2]).unwrap();
        let mut carry = 0u16;
        for (byte, order) in signature[32..].iter_mut().zip(ED25519_ORDER) {
            let sum = u16::from(*byte) + u16::from(order) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let malleated = format!(
            "{}.{}.{}",
            parts[0],
            token.split('.').nth(1).unwrap(),
            b64.encode(&signature)
        );
        let failure = code(headers(&malleated), now);
        assert!(failure.message.contains("bad signature"), "{}", failure.message);

        // A signed grant without `exp` never expires: refused.
        let mut unsigned: serde_json::Value = serde_json::to_value(claims(now)).unwrap();
        unsigned.as_object_mut().unwrap().remove("exp");
        let failure = code(headers(&signer.sign(&unsigned).unwrap()), now);
        assert!(failure.message.contains("is invalid"), "{}", failure.message);
    }

    /// The order of the Ed25519 group, little-endian.
    const ED25519_ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn g02_a_grant_for_another_envelope_is_a_mismatch_naming_the_fields() {
        let now = now_secs();
        let signer = signer();
        let keys = keys(&[&signer]);
        let mut other = claims(now);
        other.tenant = "t2".into();
        other.content_hash = HASH.replace("01", "02");
        let failure = enforce(&keys, &headers(&signer.sign(&other).unwrap()), &mut envelope(""), now).unwrap_err();
        assert_eq!(failure.code, ErrorCode::GrantMismatch);
        assert!(failure.message.contains("`context.tenant_id`"), "{}", failure.message);
        assert!(
            failure.message.contains("`context.content_hash`"),
            "{}",
            failure.message
        );
        assert!(
            !failure.message.contains("`context.extension_id`"),
            "{}",
            failure.message
        );

        // The envelope may repeat the grant's capabilities (in any order), not widen them.
        let token = signer.sign(&claims(now)).unwrap();
        let wider = r#", "providers": ["cap:storage.kv", "cap:http.fetch"]"#;
        let failure = enforce(&keys, &headers(&token), &mut envelope(wider), now).unwrap_err();
        assert_eq!(failure.code, ErrorCode::GrantMismatch);
        assert!(failure.message.contains("`providers`"), "{}", failure.message);
        let egress = r#", "egress": ["https://evil.example.net"]"#;
        let failure = enforce(&keys, &headers(&token), &mut envelope(egress), now).unwrap_err();
        assert!(failure.message.contains("`egress`"), "{}", failure.message);
        enforce(
            &keys,
            &headers(&token),
            &mut envelope(r#", "providers": ["storage.kv"]"#),
            now,
        )
        .unwrap();
    }

    #[test]
    fn grant_keys_refuse_non_ed25519_keys_and_empty_sets() {
        let empty = GrantKeys::from_jwks(&[("a.json".into(), r#"{"keys": []}"#.into())]).unwrap_err();
        assert!(format!("{empty:#}").contains("no keys"));
        let hmac = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
        let err = GrantKeys::from_jwks(&[("b.json".into(), hmac.into())]).unwrap_err();
        assert!(format!("{err:#}").contains("b.json: keys[0]"), "{err:#}");
        let err = GrantKeys::from_jwks(&[("c.json".into(), "{".into())]).unwrap_err();
        assert!(format!("{err:#}").contains("c.json: not a JWKS"), "{err:#}");
    }
}
