//! The process around the server: bind the listeners, serve both until the
//! shutdown future resolves, drain (F-05), stop. What `serve`, `serve --dev`
//! and `dev` run, and what tests can call with their own listeners and
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Runner;
use crate::server::{AppState, Listener, ServerSettings};

/// The sockets one process serves on.
pub struct Listeners {
    /// `/v1/execute`, health, metrics, OpenAPI and UI assets.
    pub service: TcpListener,
    /// `RUNNER_PUBLIC_LISTEN`: UI assets only.
    pub public: Option<TcpListener>,
}

impl Listeners {
    /// Bind what `settings` name.
    ///
    /// # Errors
    /// An address that cannot be bound, named.
    pub async fn bind(settings: &ServerSettings) -> anyhow::Result<Listeners> {
        let listen = settings.listen;
        let service = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        let public = match settings.public_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding RUNNER_PUBLIC_LISTEN {addr}: {e}"))?,
            ),
            None => None,
        };
        Ok(Listeners { service, public })
    }
}

/// Serve `runner` (and `registry` and `gateway`, when this process runs
/// those roles) on `listeners` until `shutdown` resolves, keeping the
/// revocation list in sync, the registry's execution log pruned, due
/// schedules firing (gateway and registry together,
/// [`crate::gateway::schedules`]) and the gateway's JWKS fresh meanwhile
/// ([`crate::revocation::sync`], [`crate::registry::retention`]). Then readiness
/// flips to 503 at once, the listeners keep accepting for the drain delay
/// (`RUNNER_DRAIN_DELAY_MS`) so load balancers notice, then they stop
/// accepting and in-flight work gets `grace` to finish.
///
/// # Errors
/// A listener fails.
pub async fn serve(
    runner: Arc<Runner>,
    registry: Option<Arc<crate::registry::Registry>>,
    gateway: Option<Arc<crate::gateway::Gateway>>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let key_refresh = gateway.as_ref().and_then(|g| g.refresh_keys());
    let state = AppState::with_roles(runner, registry, gateway);
    let revocations =
        crate::revocation::sync::ListSource::choose(&state.runner.config().revocations, state.registry.as_ref()).map(
            |source| {
                let revoked = state.runner.bundles().revoked().clone();
                tokio::spawn(crate::revocation::sync::run(
                    revoked,
                    source,
                    state.runner.config().revocations.clone(),
                ))
            },
        );
    let pruning = state
        .registry
        .clone()
        .map(|r| tokio::spawn(crate::registry::retention::run(r)));
    // Schedules fire where the gateway meets the registry they are kept in.
    let firing = match (&state.gateway, &state.registry) {
        (Some(gateway), Some(registry)) => Some(tokio::spawn(crate::gateway::schedules::run(
            gateway.clone(),
            registry.database().clone(),
        ))),
        _ => None,
    };
    let drain_delay = state.runner.config().server.drain_delay;
    let draining = state.clone();
    // One signal stops both listeners, after the drain delay.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        draining.runner.start_draining();
        if !drain_delay.is_zero() {
            tracing::info!(
                delay_ms = drain_delay.as_millis() as u64,
                "readiness is 503; still accepting for the drain delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("no longer accepting connections");
        let _ = stop_tx.send(true);
    };
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let service = crate::server::serve(listeners.service, state.clone(), stopped(stop_rx.clone()), grace);
    let public = async {
        let Some(public) = listeners.public else {
            return Ok(());
        };
        tracing::info!(listen = %public.local_addr()?, "UI assets listening (no /v1/execute here)");
        let app = crate::server::public_router(state.clone());
        crate::server::serve_app(public, Listener::Public, app, &state, stopped(stop_rx), grace).await
    };
    let (_, service, public) = tokio::join!(signal, service, public);
    for task in [revocations, pruning, firing, key_refresh].into_iter().flatten() {
        task.abort();
    }
    service?;
    public?;
    tracing::info!("ext-runner stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

/// F-04: under a file size limit (`RLIMIT_FSIZE`, e.g. `prlimit --fsize`)
/// a write past it raises SIGXFSZ, whose default action kills the process.
/// With a handler installed the write fails with `EFBIG` instead, which the
/// cache handles like a full disk: the request goes on from memory or gets
/// 503, and the failure is counted. (Tokio keeps the handler installed for
/// the life of the process once registered.)
pub fn ignore_file_size_signal() {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")
    ))]
    {
        /// SIGXFSZ's number on Linux for these architectures (MIPS and
        /// SPARC number it differently).
        const SIGXFSZ: i32 = 25;
        if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ)) {
            tracing::warn!(error = %e, "cannot handle SIGXFSZ; a file size limit would end the process");
        }
    }
}
