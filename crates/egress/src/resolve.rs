//! The resolver seam: [`Resolve`], the system resolver [`SystemResolver`], and
//! [`StaticResolver`] for tests. The engine resolves each destination exactly once, applies
//! the DNS timeout around any resolver (F-06), and connects only to the addresses of that one
//! answer (S-04), so a resolver never needs to be trusted to be consistent.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why a name did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(#[source] pub std::io::Error);

/// Turns a host name into addresses.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + fmt::Debug {
    /// Every address `host` (normalised: lower-case ASCII, no trailing dot) resolves to.
    /// Called once per request; the caller bounds it with the DNS timeout.
    ///
    /// # Errors
    /// [`ResolveError`] when the name does not resolve.
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread, via Tokio). On a
/// timeout the lookup's thread runs on until the OS gives up; the request does not wait for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        // The port is irrelevant: only the addresses are used.
        let answers = tokio::net::lookup_host((host, 0)).await.map_err(ResolveError)?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for answer in answers {
            if !ips.contains(&answer.ip()) {
                ips.push(answer.ip());
            }
        }
        Ok(ips)
    }
}

/// A resolver answering from a fixed table, counting lookups; for tests. Names not in the
/// table fail like NXDOMAIN.
#[derive(Debug, Default)]
pub struct StaticResolver {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    lookups: AtomicUsize,
}

impl StaticResolver {
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Answers `host` with `ips` from now on (replacing an earlier answer).
    pub fn set(&self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> &Self {
        let mut answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.insert(host.to_owned(), ips.into_iter().collect());
        self
    }

    /// How many lookups were made.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Resolve for StaticResolver {
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.get(host).cloned().ok_or_else(|| {
            ResolveError(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no such host {host}"),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn system_resolver_resolves_localhost() {
        let ips = SystemResolver.resolve("localhost").await.unwrap();
        assert!(ips.iter().all(IpAddr::is_loopback) && !ips.is_empty(), "{ips:?}");
    }

    #[tokio::test]
    async fn static_resolver_answers_and_counts() {
        let resolver = StaticResolver::new();
        resolver.set("a.test", ["192.0.2.1".parse().unwrap()]);
        assert_eq!(
            resolver.resolve("a.test").await.unwrap(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert!(resolver.resolve("b.test").await.is_err());
        assert_eq!(resolver.lookups(), 2);
    }
}
