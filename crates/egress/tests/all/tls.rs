//! `https` through rustls against a loopback TLS upstream with a certificate made for the test:
//! SNI and verification use the URL's host name, while the connection goes to the vetted IP.

use std::collections::HashMap;
use std::sync::Arc;

use ext_egress::{EgressConfig, EgressError, EgressRequest, StaticSecrets};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Harness, Upstream, allowing, get};

/// A TLS upstream for `names` and the certificate to trust.
async fn tls_upstream(names: &[&str]) -> (Upstream, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (Upstream::on(listener, Some(acceptor)), cert)
}

fn config(root: Option<CertificateDer<'static>>) -> EgressConfig {
    let mut config = allowing(&["127.0.0.1/32"]);
    config.extra_roots = root.into_iter().collect();
    config
}

/// https works end to end, and a secret handle is substituted over it (the default policy:
/// secrets only over https).
#[tokio::test]
async fn https_with_sni_and_secret() {
    let (up, root) = tls_upstream(&["api.egress.test"]).await;
    let p = up.port();
    let mut h = Harness::new(config(Some(root)), &[&format!("https://*.egress.test:{p}")]);
    h.secrets = StaticSecrets(HashMap::from([("TOKEN".to_owned(), "tls-secret".to_owned())]));
    h.resolve("api.egress.test", &["127.0.0.1"]);
    let request = EgressRequest {
        headers: vec![("authorization".into(), "Bearer {{secret:TOKEN}}".into())],
        ..get(format!("https://api.egress.test:{p}/tls?x=1"))
    };
    let response = h.fetch(request).await.unwrap();
    assert_eq!(response.status, 200);
    let seen = &up.requests()[0];
    assert_eq!(seen.uri, "/tls?x=1");
    assert_eq!(seen.headers["host"], format!("api.egress.test:{p}"));
    assert_eq!(seen.headers["authorization"], "Bearer tls-secret");
}

/// The certificate must match the URL's host name (not the IP), and chain to a trusted root.
#[tokio::test]
async fn https_verifies_name_and_root() {
    let (up, root) = tls_upstream(&["api.egress.test"]).await;
    let p = up.port();
    let patterns = [format!("https://*.egress.test:{p}")];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();

    let h = Harness::new(config(Some(root)), &patterns);
    h.resolve("other.egress.test", &["127.0.0.1"]);
    let err = h
        .fetch(get(format!("https://other.egress.test:{p}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Tls { .. }), "wrong name: {err:?}");

    let h = Harness::new(config(None), &patterns);
    h.resolve("api.egress.test", &["127.0.0.1"]);
    let err = h.fetch(get(format!("https://api.egress.test:{p}/"))).await.unwrap_err();
    assert!(matches!(err, EgressError::Tls { .. }), "untrusted root: {err:?}");
    assert_eq!(err.code(), "tls_failed");
    assert!(up.requests().is_empty());
}
