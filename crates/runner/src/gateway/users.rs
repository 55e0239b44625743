//! Who is calling: the end user's `Authorization: Bearer <JWT>`, checked
//! against HS256 (`GATEWAY_JWT_SECRET`) or the ES256 / RS256 / EdDSA keys of
//! `GATEWAY_JWKS_FILE` / `GATEWAY_JWKS_URL` (catalogue G-01).
//!
//! Each key's algorithm is pinned: by the JWK's `alg`, else by its type
//! (EC P-256 → ES256, RSA → RS256, OKP Ed25519 → EdDSA), and a token whose
//! header names another algorithm is refused (so `alg: none` and an RSA key
//! used as an HMAC secret never verify). `exp` is required and enforced with
//! [`USER_TOKEN_LEEWAY_SECS`] of clock skew; `tenant` is required.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::settings::GatewaySettings;
use crate::error::{ErrorCode, Failure};

/// Clock difference tolerated between the token's issuer and the gateway.
pub const USER_TOKEN_LEEWAY_SECS: u64 = 30;
/// A token naming an unknown `kid` fetches `GATEWAY_JWKS_URL` again at most
/// this often: an issuer's new key is picked up quickly, and a flood of
/// tokens with made-up ids costs one fetch per interval, not one per token.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// Longest a JWKS fetch may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted (a few dozen keys fit in a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest `Authorization` value looked at: a JWT of a few claims is well
/// under 1 KiB; 8 KiB leaves room for large RSA signatures and claim sets.
pub const MAX_USER_TOKEN_BYTES: usize = 8 * 1024;

/// The claims the gateway reads from a user token.
#[derive(Clone, Debug, Deserialize)]
pub struct UserClaims {
    pub tenant: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default, alias = "company_name")]
    pub client_name: Option<String>,
    pub exp: u64,
}

/// Who an HS256 user token made here is for ([`sign_hs256`]).
pub struct UserTokenRequest<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub ttl_secs: u64,
}

/// The user `serve --dev`'s printed token and its host page sign in as.
pub const DEV_USER: &str = "dev-user";

impl<'a> UserTokenRequest<'a> {
    /// [`DEV_USER`] of `tenant`, for `ttl_secs`.
    pub fn dev_user(tenant: &'a str, ttl_secs: u64) -> UserTokenRequest<'a> {
        UserTokenRequest {
            tenant,
            user: DEV_USER,
            email: Some("dev@example.com"),
            name: Some("Dev User"),
            ttl_secs,
        }
    }
}

/// An HS256 user token signed with `secret` (`gateway token`, `serve
/// --dev`'s printed token).
///
/// # Errors
/// A tenant id the gateway would refuse, or a secret shorter than
/// [`super::settings::MIN_JWT_SECRET_BYTES`].
pub fn sign_hs256(secret: &str, request: &UserTokenRequest<'_>) -> anyhow::Result<String> {
    ext_registry::names::check_tenant(request.tenant).map_err(|why| anyhow::anyhow!("tenant: {why}"))?;
    if secret.len() < super::settings::MIN_JWT_SECRET_BYTES {
        bail!(
            "the secret must be at least {} bytes",
            super::settings::MIN_JWT_SECRET_BYTES
        );
    }
    let claims = serde_json::json!({
        "tenant": request.tenant,
        "sub": request.user,
        "email": request.email,
        "name": request.name,
        "user_type": "internal",
        "exp": crate::grant::now_secs() + request.ttl_secs,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

/// One verification key and the one algorithm it verifies.
struct UserKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Every key user tokens may be signed with.
pub struct UserKeys {
    hs256: Option<DecodingKey>,
    file: Vec<UserKey>,
    remote: Option<RemoteJwks>,
    /// `GATEWAY_JWT_AUDIENCE` / `GATEWAY_JWT_ISSUER`, when set: a token
    /// must carry that `aud` / `iss`.
    audience: Option<String>,
    issuer: Option<String>,
}

/// `GATEWAY_JWKS_URL`'s keys, as last fetched.
struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<UserKey>>>,
    /// When the keys were last fetched (or a fetch last failed).
    fetched: Mutex<Option<Instant>>,
}

fn unauthorized(why: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorCode::Unauthorized, format!("user token {why}"))
}

impl UserKeys {
    /// The keys `settings` name; `GATEWAY_JWKS_URL` is fetched once now.
    ///
    /// # Errors
    /// No key configured, an unreadable or unusable JWKS file, a JWKS URL
    /// that does not answer with usable keys; each naming its setting.
    pub async fn load(settings: &GatewaySettings) -> anyhow::Result<UserKeys> {
        let hs256 = settings
            .jwt_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.as_bytes()))
            .transpose()
            .context("GATEWAY_JWT_SECRET")?;
        let file = match &settings.jwks_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("GATEWAY_JWKS_FILE: reading {}", path.display()))?;
                parse_jwks(&text).with_context(|| format!("GATEWAY_JWKS_FILE: {}", path.display()))?
            }
            None => Vec::new(),
        };
        let remote = match &settings.jwks_url {
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(JWKS_FETCH_TIMEOUT)
                    .build()
                    .context("GATEWAY_JWKS_URL: building the HTTP client")?;
                let keys = fetch_jwks(&client, url)
                    .await
                    .with_context(|| format!("GATEWAY_JWKS_URL: {url}"))?;
                Some(RemoteJwks {
                    url: url.clone(),
                    client,
                    keys: RwLock::new(Arc::new(keys)),
                    fetched: Mutex::new(Some(Instant::now())),
                })
            }
            None => None,
        };
        if hs256.is_none() && file.is_empty() && remote.is_none() {
            bail!("the gateway role needs user-token keys: GATEWAY_JWT_SECRET, GATEWAY_JWKS_FILE or GATEWAY_JWKS_URL");
        }
        Ok(UserKeys {
            hs256,
            file,
            remote,
            audience: settings.jwt_audience.clone(),
            issuer: settings.jwt_issuer.clone(),
        })
    }

    /// Fetch `GATEWAY_JWKS_URL` again (the refresh task and unknown `kid`s);
    /// a failed fetch keeps the keys held.
    pub async fn refresh(&self) {
        let Some(remote) = &self.remote else {
            return;
        };
        *remote.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        match fetch_jwks(&remote.client, &remote.url).await {
            Ok(keys) => *remote.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys),
            Err(e) => {
                tracing::warn!(url = %remote.url, error = %format!("{e:#}"), "GATEWAY_JWKS_URL refresh failed; keeping the keys held")
            }
        }
    }

    /// Whether a JWKS URL is configured (the refresh task runs only then).
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The claims of the bearer token in `authorization`.
    ///
    /// # Errors
    /// [`ErrorCode::Unauthorized`]: no token, not a JWT, an algorithm or key
    /// not configured, a bad signature, no or an expired `exp`, no `tenant`.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<UserClaims, Failure> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::Unauthorized,
                    "a user token is required (Authorization: Bearer <JWT>)",
                )
            })?;
        if token.len() > MAX_USER_TOKEN_BYTES {
            return Err(unauthorized(format!("is longer than {MAX_USER_TOKEN_BYTES} bytes")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| unauthorized(format!("is not a JWT: {e}")))?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .hs256
                    .as_ref()
                    .ok_or_else(|| unauthorized("is HS256, which is not configured"))?;
                self.decode(token, key, Algorithm::HS256)?
            }
            alg => match self.find(token, header.kid.as_deref(), alg) {
                Some(decoded) => decoded?,
                None => {
                    self.refetch_for_unknown_key().await;
                    self.find(token, header.kid.as_deref(), alg)
                        .unwrap_or_else(|| Err(unauthorized(format!("names no configured {alg:?} key"))))?
                }
            },
        };
        ext_registry::names::check_tenant(&claims.tenant).map_err(|why| unauthorized(format!("tenant: {why}")))?;
        Ok(claims)
    }

    /// Decode with the key `kid` names (or the only key of `alg` when the
    /// token names none); `None` when no such key is held.
    fn find(&self, token: &str, kid: Option<&str>, alg: Algorithm) -> Option<Result<UserClaims, Failure>> {
        let remote = self
            .remote
            .as_ref()
            .map(|r| r.keys.read().unwrap_or_else(|p| p.into_inner()).clone());
        let keys = self.file.iter().chain(remote.iter().flat_map(|k| k.iter()));
        let key = match kid {
            Some(kid) => keys.into_iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut of_alg = keys.into_iter().filter(|k| k.algorithm == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }?;
        if key.algorithm != alg {
            return Some(Err(unauthorized(format!(
                "is {alg:?}, but its key is pinned to {:?}",
                key.algorithm
            ))));
        }
        Some(self.decode(token, &key.key, alg))
    }

    async fn refetch_for_unknown_key(&self) {
        let Some(remote) = &self.remote else {
            return;
        };
        let due = remote
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= JWKS_MIN_REFETCH);
        if due {
            self.refresh().await;
        }
    }
}

impl UserKeys {
    /// Verify `token` with `key` under `alg` only, with the audience and
    /// issuer when they are configured.
    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<UserClaims, Failure> {
        let mut validation = Validation::new(alg);
        validation.leeway = USER_TOKEN_LEEWAY_SECS;
        validation.validate_exp = true;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        jsonwebtoken::decode::<UserClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => unauthorized("has expired"),
                    K::InvalidSignature => unauthorized("has a bad signature"),
                    K::InvalidAudience => unauthorized("is for another audience (GATEWAY_JWT_AUDIENCE)"),
                    K::InvalidIssuer => unauthorized("is from another issuer (GATEWAY_JWT_ISSUER)"),
                    K::MissingRequiredClaim(claim) => unauthorized(format!("has no `{claim}` claim")),
                    _ => unauthorized(format!("is invalid: {e}")),
                }
            })
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<UserKey>> {
    let response = client.get(url).send().await.context("fetching")?;
    if !response.status().is_success() {
        bail!("answered {}", response.status());
    }
    let bytes = response.bytes().await.context("reading")?;
    if bytes.len() > MAX_JWKS_BYTES {
        bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
    }
    parse_jwks(std::str::from_utf8(&bytes).context("the JWKS is not UTF-8")?)
}

/// The usable keys of a JWKS document, each pinned to its algorithm.
fn parse_jwks(text: &str) -> anyhow::Result<Vec<UserKey>> {
    let set: JwkSet = serde_json::from_str(text).context("not a JWKS document")?;
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let algorithm = pinned_algorithm(jwk).with_context(|| format!("keys[{index}]"))?;
        let key = DecodingKey::from_jwk(jwk).with_context(|| format!("keys[{index}]"))?;
        keys.push(UserKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        bail!("no keys");
    }
    Ok(keys)
}

/// The one algorithm `jwk` verifies: ES256, RS256 or EdDSA.
fn pinned_algorithm(jwk: &Jwk) -> anyhow::Result<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => bail!("user-token keys are EC P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA); HS256 is GATEWAY_JWT_SECRET"),
    };
    match jwk.common.key_algorithm {
        None => Ok(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Ok(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Ok(by_type),
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Ok(by_type),
        Some(other) => bail!("`alg` {other:?} is not accepted for this key (only {by_type:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef";

    fn keys() -> UserKeys {
        UserKeys {
            hs256: Some(DecodingKey::from_secret(SECRET.as_bytes()).unwrap()),
            file: Vec::new(),
            remote: None,
            audience: None,
            issuer: None,
        }
    }

    fn hs256(claims: &serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key).unwrap();
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn a_configured_audience_and_issuer_are_required() {
        let strict = UserKeys {
            audience: Some("ext-gateway".into()),
            issuer: Some("https://idp.example.com".into()),
            ..keys()
        };
        let exp = crate::grant::now_secs() + 60;
        let good =
            serde_json::json!({"tenant": "t1", "exp": exp, "aud": "ext-gateway", "iss": "https://idp.example.com"});
        assert_eq!(strict.verify(Some(&hs256(&good))).await.unwrap().tenant, "t1");
        for (field, value, why) in [
            ("aud", serde_json::json!("another-app"), "another audience"),
            ("iss", serde_json::json!("https://evil.example.com"), "another issuer"),
            ("aud", serde_json::Value::Null, "no `aud` claim"),
            ("iss", serde_json::Value::Null, "no `iss` claim"),
        ] {
            let mut claims = good.clone();
            match value {
                serde_json::Value::Null => {
                    claims.as_object_mut().unwrap().remove(field);
                }
                value => claims[field] = value,
            }
            let err = strict.verify(Some(&hs256(&claims))).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized);
            assert!(err.message.contains(why), "{field}: {}", err.message);
        }
        // Without the settings, neither claim is looked at.
        let plain = serde_json::json!({"tenant": "t1", "exp": exp, "aud": "anything"});
        assert!(keys().verify(Some(&hs256(&plain))).await.is_ok());
    }

    fn request(tenant: &str) -> UserTokenRequest<'_> {
        UserTokenRequest {
            tenant,
            user: "u-1",
            email: Some("u@example.com"),
            name: None,
            ttl_secs: 60,
        }
    }

    #[tokio::test]
    async fn a_signed_token_verifies_with_its_claims() {
        let token = sign_hs256(SECRET, &request("t1")).unwrap();
        let claims = keys().verify(Some(&format!("Bearer {token}"))).await.unwrap();
        assert_eq!((claims.tenant.as_str(), claims.sub.as_deref()), ("t1", Some("u-1")));
        assert_eq!(claims.email.as_deref(), Some("u@example.com"));
        let other = sign_hs256("another-secret-0123456789abcdefgh", &request("t1")).unwrap();
        let err = keys().verify(Some(&format!("Bearer {other}"))).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert!(err.message.contains("bad signature"), "{}", err.message);
    }

    #[test]
    fn tokens_are_refused_for_bad_tenants_and_short_secrets() {
        assert!(sign_hs256(SECRET, &request("../x")).is_err());
        assert!(sign_hs256("short", &request("t1")).is_err());
    }

    /// An Ed25519 key: its encoding key and its JWKS text with `kid`.
    fn ed25519(kid: &str) -> (jsonwebtoken::EncodingKey, String) {
        let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::Ed25519).to_pkcs8_pem();
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        (key, serde_json::json!({"keys": [jwk]}).to_string())
    }

    fn signed(key: &jsonwebtoken::EncodingKey, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        let claims = serde_json::json!({"tenant": "t1", "exp": crate::grant::now_secs() + 60});
        format!("Bearer {}", jsonwebtoken::encode(&header, &claims, key).unwrap())
    }

    #[tokio::test]
    async fn jwks_url_keys_rotate_on_an_unknown_kid_at_most_every_interval() {
        let (old_key, old_jwks) = ed25519("old");
        let (new_key, new_jwks) = ed25519("new");
        let served = Arc::new(Mutex::new(old_jwks));
        let app = {
            let served = served.clone();
            axum::Router::new().route(
                "/jwks",
                axum::routing::get(move || {
                    let served = served.clone();
                    async move { served.lock().unwrap().clone() }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let source = crate::config::source::Source::new(std::collections::HashMap::from([(
            "GATEWAY_JWKS_URL".to_string(),
            url,
        )]));
        let keys = UserKeys::load(&GatewaySettings::from_source(&source)).await.unwrap();
        assert!(keys.verify(Some(&signed(&old_key, "old"))).await.is_ok());

        // The issuer rotates: a token with the new kid, just after a fetch,
        // does not fetch again (a flood of made-up kids costs nothing)...
        *served.lock().unwrap() = new_jwks;
        let new_token = signed(&new_key, "new");
        assert_eq!(
            keys.verify(Some(&new_token)).await.unwrap_err().code,
            ErrorCode::Unauthorized
        );
        // ...and once the interval has passed, it does: the new key verifies,
        // the old one is gone.
        let remote = keys.remote.as_ref().unwrap();
        *remote.fetched.lock().unwrap() = Instant::now().checked_sub(JWKS_MIN_REFETCH);
        assert!(keys.verify(Some(&new_token)).await.is_ok());
        assert!(keys.verify(Some(&signed(&old_key, "old"))).await.is_err());
    }

    #[tokio::test]
    async fn a_jwks_url_that_does_not_answer_stops_start_up() {
        let source = crate::config::source::Source::new(std::collections::HashMap::from([(
            "GATEWAY_JWKS_URL".to_string(),
            "http://127.0.0.1:9/jwks".to_string(),
        )]));
        let err = UserKeys::load(&GatewaySettings::from_source(&source))
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("GATEWAY_JWKS_URL"), "{err:#}");
    }

    #[test]
    fn jwks_keys_are_pinned_to_one_algorithm() {
        let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::Ed25519).to_pkcs8_pem();
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        let text = |jwk: &Jwk| serde_json::json!({"keys": [jwk]}).to_string();
        assert_eq!(parse_jwks(&text(&jwk)).unwrap()[0].algorithm, Algorithm::EdDSA);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        assert!(parse_jwks(&text(&jwk)).is_err());
        assert!(parse_jwks(r#"{"keys": []}"#).is_err());
    }
}
