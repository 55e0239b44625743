//! `serve --dev`'s host page: a small host application on the gateway's
//! listener that shows the whole system working in a browser. It signs in
//! as a dev user, asks the gateway for the iframe URL of the tenant's
//! installed version, embeds the UI with the bridge SDK's host side and
//! forwards its `apiproxy` calls through the gateway, showing each call.
//!
//! - `GET /dev/host[?tenant=…&extension=…]`: the page (`host.html`), its
//!   defaults in a JSON script element, under a CSP that lets it frame the
//!   runner's UI origin only;
//! - `GET /dev/host/{file}`: `host.js`, `host.css` and `bridge-host.js`,
//!   the SDK's host side as one ES module: a committed build of
//!   `sdk/iframe-bridge` (`npm run sync-dev-host`; the SDK's tests fail
//!   when it is stale), so the binary builds without the SDK's `dist/`;
//! - `POST /dev/token?tenant=…`: a user token for `tenant`, HS256 with
//!   `GATEWAY_JWT_SECRET` (`serve --dev` makes one when no user-token keys
//!   are configured), valid [`DEV_HOST_TOKEN_TTL_SECS`].
//!
//! Mounted only when the process runs `serve --dev` (or `dev`) with the
//! gateway role ([`DevHost::for_config`]); anywhere else `/dev/…` is the
//! API's 404. Anyone who reaches `/dev/token` can act as any user of any
//! tenant, so it answers only on a loopback listener and only to requests
//! whose `Host` is a loopback name (a page of another site that a DNS name
//! rebinds to 127.0.0.1 still sends its own host name).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::request::query_pairs;
use super::users::{DEV_USER, UserTokenRequest, sign_hs256};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode, Failure};
use crate::server::request_id::{id_of, set_request_id};

/// How long a token from `/dev/token` is valid: long enough to click
/// around, short enough that one copied out of the page soon stops
/// working. The page asks for a new one when it runs out.
pub const DEV_HOST_TOKEN_TTL_SECS: u64 = 15 * 60;

const PAGE: &str = include_str!("host.html");

/// The page's files: name, content type, text.
const FILES: &[(&str, &str, &str)] = &[
    ("host.js", "text/javascript; charset=utf-8", include_str!("host.js")),
    ("host.css", "text/css; charset=utf-8", include_str!("host.css")),
    (
        "bridge-host.js",
        "text/javascript; charset=utf-8",
        include_str!("bridge-host.js"),
    ),
];

/// The host page's state.
pub struct DevHost {
    /// `GATEWAY_JWT_SECRET`; `None` when user tokens come from a JWKS only
    /// (then `/dev/token` says so).
    jwt_secret: Option<String>,
    /// Whether the service listener (`RUNNER_LISTEN`) is on loopback.
    loopback: bool,
    /// The origin of `RUNNER_PUBLIC_BASE`: where the iframe must load from.
    ui_origin: String,
    /// The tenant and extension `serve --dev` published and installed: the
    /// page's defaults. Set once, after the first publish.
    published: OnceLock<(String, String)>,
}

impl DevHost {
    /// The host page for this process: `Some` only under `serve --dev`
    /// with the gateway role. `public_base` is where browsers reach the
    /// runner's UI assets.
    pub fn for_config(config: &Config, public_base: &str) -> Option<DevHost> {
        (config.server.dev && config.roles.gateway).then(|| DevHost {
            jwt_secret: config.gateway.jwt_secret.clone(),
            loopback: config.server.listen.ip().is_loopback(),
            ui_origin: origin_of(public_base).to_string(),
            published: OnceLock::new(),
        })
    }

    /// What `serve --dev` published and installed: the page opens it for
    /// that tenant unless its query names others. Later calls change nothing.
    pub fn published(&self, tenant: &str, extension: &str) {
        let _ = self.published.set((tenant.to_string(), extension.to_string()));
    }

    /// A user token for the tenant the query names.
    fn token(&self, headers: &http::HeaderMap, query: Option<&str>) -> Result<serde_json::Value, Failure> {
        if !self.loopback {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "dev user tokens are made only when the service listens on loopback (RUNNER_LISTEN)",
            ));
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !is_loopback_host(host) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "dev user tokens are made only for a loopback host name (127.0.0.1, [::1] or localhost)",
            ));
        }
        let Some(secret) = self.jwt_secret.as_deref() else {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "this gateway takes user tokens from GATEWAY_JWKS_FILE/GATEWAY_JWKS_URL only; \
                 dev user tokens need GATEWAY_JWT_SECRET",
            ));
        };
        let query = query_pairs(query);
        let tenant = query
            .iter()
            .find(|(k, _)| k == "tenant")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Failure::new(ErrorCode::InvalidRequest, "tenant: required (?tenant=…)"))?;
        ext_registry::names::check_tenant(tenant)
            .map_err(|why| Failure::new(ErrorCode::InvalidRequest, format!("tenant: {why}")))?;
        let exp = crate::grant::now_secs() + DEV_HOST_TOKEN_TTL_SECS;
        let token = sign_hs256(secret, &UserTokenRequest::dev_user(tenant, DEV_HOST_TOKEN_TTL_SECS))
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("signing the dev user token: {e:#}")))?;
        Ok(serde_json::json!({"token": token, "tenant": tenant, "user": DEV_USER, "exp": exp}))
    }

    /// The page, with its defaults where `host.js` reads them.
    fn page(&self) -> Response {
        let (tenant, extension) = match self.published.get() {
            Some((tenant, extension)) => (Some(tenant.as_str()), Some(extension.as_str())),
            None => (None, None),
        };
        let config = serde_json::json!({
            "tenant": tenant,
            "extension": extension,
            "uiOrigin": self.ui_origin,
        });
        // `<` escaped: the JSON sits inside a <script> element.
        let html = PAGE.replace("__CONFIG__", &config.to_string().replace('<', "\\u003c"));
        let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
             frame-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            self.ui_origin
        );
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }
}

/// The host page's routes, for the gateway's router.
pub fn router<S: Clone + Send + Sync + 'static>(dev: Arc<DevHost>) -> Router<S> {
    Router::new()
        .route("/dev/host", get(page))
        .route("/dev/host/{file}", get(file))
        .route("/dev/token", post(token))
        .with_state(dev)
}

async fn page(State(dev): State<Arc<DevHost>>) -> Response {
    dev.page()
}

async fn file(Path(name): Path<String>, request: Request) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, text)) => {
            let mut response = ([(header::CONTENT_TYPE, *content_type)], *text).into_response();
            response
                .headers_mut()
                .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        None => ApiError::new(
            ErrorCode::NotFound,
            format!("no route for {}", request.uri().path()),
            id_of(&request),
        )
        .into_response(),
    }
}

async fn token(State(dev): State<Arc<DevHost>>, request: Request) -> Response {
    let request_id = id_of(&request);
    let mut response = match dev.token(request.headers(), request.uri().query()) {
        Ok(body) => axum::Json(body).into_response(),
        Err(Failure { code, message }) => ApiError::new(code, message, &request_id).into_response(),
    };
    set_request_id(response.headers_mut(), &request_id);
    response
}

/// `scheme://authority` of an http(s) URL (`RUNNER_PUBLIC_BASE` may carry
/// a path).
fn origin_of(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return url;
    };
    match rest.find(['/', '?', '#']) {
        Some(end) => &url[..url.len() - rest.len() + end],
        None => url,
    }
}

/// Whether a `Host` header names this machine: `localhost` or a loopback
/// address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(name, _)| name),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_get_tokens() {
        for (host, loopback) in [
            ("127.0.0.1:8080", true),
            ("127.0.0.1", true),
            ("127.1.2.3:80", true),
            ("localhost:8080", true),
            ("LOCALHOST", true),
            ("[::1]:8080", true),
            ("[::1]", true),
            ("10.0.0.5:8080", false),
            ("rebound.example:8080", false),
            ("localhost.example:8080", false),
            ("[::2]:8080", false),
            ("[::1", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(host), loopback, "{host}");
        }
    }

    #[test]
    fn the_ui_origin_leaves_any_path_off() {
        assert_eq!(origin_of("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
        assert_eq!(origin_of("https://cdn.example.com/runner"), "https://cdn.example.com");
        assert_eq!(origin_of("https://cdn.example.com?x"), "https://cdn.example.com");
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        for (name, _, _) in FILES {
            let reference = format!("/dev/host/{name}");
            let named = PAGE.contains(&reference) || FILES.iter().any(|(_, _, text)| text.contains(&reference));
            assert!(named, "{name} is served but nothing loads it");
        }
        for reference in PAGE.split("\"/dev/host/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(FILES.iter().any(|(file, _, _)| *file == name), "the page loads {name}");
        }
    }
}
