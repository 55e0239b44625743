//! Accepting and supervising connections, for both listeners (A-17, A-18,
//!
//!
//! hyper enforces the HTTP/1 header-read timeout only once it has chosen a
//! protocol, and HTTP/2 has no idle limit of its own, so every connection
//! gets a watchdog here that sees what hyper does not:
//! - **silent**: no request's headers (HTTP/1) or HEADERS frame (HTTP/2)
//!   within the header-read timeout of accept → closed;
//! - **idle**: no request in flight for the keep-alive idle timeout → a
//!   graceful close (HTTP/2 GOAWAY), forced after [`GRACEFUL_CLOSE`];
//! - **stalled**: a response write that makes no progress for the write
//!   stall timeout (a client that stops reading) → closed.
//!
//! Each listener holds at most `RUNNER_MAX_CONNECTIONS` connections; one
//! more is closed at once and counted, so silent or idle clients can never
//! take the process's file descriptors from `/healthz` and real traffic.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::limits::{
    GRACEFUL_CLOSE, H2_KEEPALIVE_INTERVAL, H2_KEEPALIVE_TIMEOUT, H2_MAX_CONCURRENT_STREAMS, H2_MAX_LOCAL_ERROR_RESETS,
    H2_MAX_PENDING_RESETS, MAX_INBOUND_HEADER_BUF_BYTES, MAX_INBOUND_HEADERS,
};

/// The time limits and the cap one listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once on this listener.
    pub max_connections: usize,
    /// From accept to the first request's headers, and for each HTTP/1
    /// request's headers after that.
    pub header_read_timeout: Duration,
    /// No request in flight for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// A response write blocked for this long: the client stopped reading.
    pub write_stall_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits the server settings set.
    pub fn new(settings: &super::ServerSettings) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: settings.max_connections,
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.idle_timeout,
            write_stall_timeout: settings.write_stall_timeout,
        }
    }
}

/// Why connections ended early, and how many are open, for one listener
/// (read by `/metrics` and tests).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Closed at accept: the listener was at `RUNNER_MAX_CONNECTIONS`.
    pub refused_over_cap: AtomicU64,
    /// Closed because no request arrived within the header-read timeout.
    pub closed_silent: AtomicU64,
    /// Closed after the keep-alive idle timeout.
    pub closed_idle: AtomicU64,
    /// Closed because a response write made no progress (slow reader).
    pub closed_stalled: AtomicU64,
}

impl ConnectionStats {
    /// `(reason, count)` of every early close, for metrics.
    pub fn closes(&self) -> [(&'static str, u64); 4] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("over_cap", load(&self.refused_over_cap)),
            ("silent", load(&self.closed_silent)),
            ("idle", load(&self.closed_idle)),
            ("write_stalled", load(&self.closed_stalled)),
        ]
    }
}

/// What the watchdog knows about one connection. Times are milliseconds
/// since accept; `0` in `write_blocked_since` means no write is waiting.
struct Activity {
    accepted: Instant,
    requests: AtomicU64,
    in_flight: AtomicU32,
    last_done: AtomicU64,
    write_blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last_done: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that "blocked at accept" is not mistaken for "not blocked".
        self.accepted.elapsed().as_millis() as u64 + 1
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// What to do now, or when to look again.
    fn verdict(&self, limits: &ConnectionLimits) -> Verdict {
        let now = self.now_ms();
        let ms = |d: Duration| d.as_millis() as u64;
        let blocked = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 {
            let stalled_at = blocked + ms(limits.write_stall_timeout);
            return if now >= stalled_at {
                Verdict::Stalled
            } else {
                Verdict::Recheck(Duration::from_millis(stalled_at - now))
            };
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            let silent_at = ms(limits.header_read_timeout);
            return if now >= silent_at {
                Verdict::Silent
            } else {
                Verdict::Recheck(Duration::from_millis(silent_at - now))
            };
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is running (its own deadlines bound it); writes are
            // watched from the moment one blocks.
            return Verdict::Recheck(limits.write_stall_timeout.min(limits.idle_timeout));
        }
        let idle_at = self.last_done.load(Ordering::Relaxed) + ms(limits.idle_timeout);
        if now >= idle_at {
            Verdict::Idle
        } else {
            Verdict::Recheck(Duration::from_millis(idle_at - now))
        }
    }
}

enum Verdict {
    Recheck(Duration),
    Silent,
    Idle,
    Stalled,
}

/// One request in flight: from the call of the service until its response
/// body is dropped (sent, or abandoned by a reset or a closed connection).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The router as a hyper service that reports each request to the watchdog.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for Tracked {
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let response = match app.oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The socket, with writes watched for a client that stopped reading.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn track<T>(&self, poll: Poll<T>) -> Poll<T> {
        let blocked = &self.activity.write_blocked_since;
        match &poll {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.activity.now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => blocked.store(0, Ordering::Relaxed),
        }
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.track(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.track(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.track(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The HTTP/1 + HTTP/2 connection builder every listener uses.
fn builder(limits: &ConnectionLimits) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(MAX_INBOUND_HEADERS)
        .max_buf_size(MAX_INBOUND_HEADER_BUF_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_INBOUND_HEADER_BUF_BYTES as u32)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    builder
}

/// Accept on `listener` until `shutdown` resolves; then stop accepting, let
/// open connections finish their in-flight requests (up to `grace`) and
/// return.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) {
    let builder = Arc::new(builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Per-connection failures (EMFILE, resets) must not stop the server.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // over the cap the connection is closed at once.
                    stats.refused_over_cap.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let builder = builder.clone();
                let stats = stats.clone();
                let app = app.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    stats.open.fetch_add(1, Ordering::Relaxed);
                    supervise(stream, app, &builder, &limits, &stats, stop, grace).await;
                    stats.open.fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                });
                // Reap finished connection tasks so the set stays small.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    connections.abort_all();
}

/// Serve one connection under the watchdog until it ends, is closed by a
/// limit, or the server stops (graceful, bounded by `grace`).
async fn supervise(
    stream: TcpStream,
    app: Router,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    limits: &ConnectionLimits,
    stats: &ConnectionStats,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Tracked {
        app,
        activity: activity.clone(),
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let check = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(check);
    loop {
        // Polled in this order so a finished connection is never counted as closed by a limit.
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            _ = stop.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(grace, connection.as_mut()).await;
                return;
            }
            () = &mut check => {
                let counter = match activity.verdict(limits) {
                    Verdict::Recheck(after) => {
                        check.as_mut().reset(tokio::time::Instant::now() + after);
                        continue;
                    }
                    Verdict::Silent => &stats.closed_silent,
                    Verdict::Stalled => &stats.closed_stalled,
                    Verdict::Idle => {
                        stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(GRACEFUL_CLOSE, connection.as_mut()).await;
                        return;
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return; // dropping the connection closes the socket
            }
        }
    }
}
