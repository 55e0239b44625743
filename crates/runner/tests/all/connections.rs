//! Connection supervision through a real socket: silent,
//! idle and stalled connections are closed, each listener is capped, and
//! HTTP/2 floods end the flooding connection without hurting others.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ext_runner::server::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::h2raw::{self, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, RST_STREAM};
use crate::support::*;

/// `GET /healthz` on a fresh HTTP/1.1 connection answers 200.
async fn healthz_ok(addr: std::net::SocketAddr) -> bool {
    let response = raw_exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    response.starts_with("HTTP/1.1 200")
}

/// Whether the server closes `stream` (EOF or reset) within `within`,
/// ignoring whatever it sends first.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// TCP connections that never send a byte, and HTTP/2 connections
/// that send only the preface, are closed once the header-read timeout
/// has passed since accept, while `/healthz` keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a20_silent_and_preface_only_connections_are_closed() {
    let t = TestRunner::with_env(&[("RUNNER_HEADER_READ_TIMEOUT_MS", "300")]);
    let served = serve(&t).await;
    let mut silent = Vec::new();
    for _ in 0..25 {
        silent.push(TcpStream::connect(served.addr).await.unwrap());
    }
    for _ in 0..25 {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        stream.write_all(h2raw::PREFACE).await.unwrap();
        silent.push(stream);
    }
    assert!(
        healthz_ok(served.addr).await,
        "/healthz must answer beside silent connections"
    );
    let started = Instant::now();
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a silent connection was still open 5 s after a 300 ms header-read timeout"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = t.state.connections(Listener::Service);
    assert_eq!(stats.closed_silent.load(Ordering::Relaxed), 50);
    // The /healthz connection's own close is counted by its task, which may
    // run a moment after the client saw the answer (on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.open.load(Ordering::Relaxed) != 0 {
        assert!(
            Instant::now() < deadline,
            "{} connections still counted open",
            stats.open.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthz_ok(served.addr).await);
}

/// a listener holds at most `RUNNER_MAX_CONNECTIONS`; one more is
/// closed at once and counted; once the silent ones are closed by their
/// deadline, `/healthz` is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a20_connection_cap_closes_the_excess_at_once() {
    let t = TestRunner::with_env(&[
        ("RUNNER_MAX_CONNECTIONS", "8"),
        ("RUNNER_HEADER_READ_TIMEOUT_MS", "500"),
    ]);
    let served = serve(&t).await;
    let stats = t.state.connections(Listener::Service).clone();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(served.addr).await.unwrap());
    }
    // Let the accept loop take all eight before the ninth arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.open.load(Ordering::Relaxed) < 8 {
        assert!(Instant::now() < deadline, "the eight connections were not accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut excess = TcpStream::connect(served.addr).await.unwrap();
    assert!(
        closed_within(&mut excess, Duration::from_millis(400)).await,
        "the connection over the cap was not closed before the silent ones' deadline"
    );
    assert_eq!(stats.refused_over_cap.load(Ordering::Relaxed), 1);
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    assert!(healthz_ok(served.addr).await);
}

/// an HTTP/1.1 keep-alive connection with nothing in flight is closed
/// after `RUNNER_IDLE_TIMEOUT_MS`; one that is still busy is not.
#[tokio::test]
async fn a20_idle_http1_keepalive_is_closed() {
    let t = TestRunner::with_env(&[("RUNNER_IDLE_TIMEOUT_MS", "300")]);
    let served = serve(&t).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stayed open for 5 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the idle timeout"
    );
    let stats = t.state.connections(Listener::Service);
    assert_eq!(stats.closed_idle.load(Ordering::Relaxed), 1);
    assert_eq!(stats.closed_silent.load(Ordering::Relaxed), 0);
}

/// an HTTP/2 connection that made one request and then went quiet
/// gets GOAWAY and is closed after the idle timeout.
#[tokio::test]
async fn a20_idle_http2_connection_gets_goaway() {
    let t = TestRunner::with_env(&[("RUNNER_IDLE_TIMEOUT_MS", "300")]);
    let served = serve(&t).await;
    let mut stream = h2raw::connect(served.addr).await;
    let headers = h2raw::request_headers("GET", "/healthz", &[]);
    stream
        .write_all(&h2raw::frame(HEADERS, END_HEADERS | END_STREAM, 1, &headers))
        .await
        .unwrap();
    let (kinds, closed) = h2raw::read_frames(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "an idle HTTP/2 connection stayed open for 10 s");
    assert!(kinds.contains(&HEADERS), "no response headers: {kinds:?}");
    assert!(kinds.contains(&GOAWAY), "closed without GOAWAY: {kinds:?}");
    assert_eq!(
        t.state
            .connections(Listener::Service)
            .closed_idle
            .load(Ordering::Relaxed),
        1
    );
}

/// a request body that stops arriving gets 408 at the body-read
/// timeout, and no execution slot is held.
#[tokio::test]
async fn a18_slow_request_body_gets_408() {
    let t = TestRunner::with_env(&[("RUNNER_BODY_READ_TIMEOUT_MS", "300")]);
    let served = serve(&t).await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/execute HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 1000\r\n\r\n{{\"context\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection with a stalled body stayed open");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert_eq!(t.runner.in_flight(), 0);
}

/// a client that asks for a large response and never reads it is
/// disconnected once the write has made no progress for
/// `RUNNER_WRITE_STALL_TIMEOUT_MS`; its execution slot was already freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a18_slow_reader_is_disconnected() {
    let t = TestRunner::with_env(&[("RUNNER_WRITE_STALL_TIMEOUT_MS", "300")]);
    let digest = t.publish_fixture("limits_big_response");
    let served = serve(&t).await;
    // 8 MiB of body, base64 in JSON: far more than the socket buffers hold.
    let body = envelope(&digest, "GET", "/?bytes=8388608").to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(served.addr).await.unwrap();
    stream.write_all(&http_request(&body)).await.unwrap();
    let stats = t.state.connections(Listener::Service).clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.closed_stalled.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "a client that never reads kept its connection for 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.runner.in_flight(), 0);
    assert_eq!(stats.open.load(Ordering::Relaxed), 0);
    assert!(healthz_ok(served.addr).await);
}

/// A-19 rapid reset: a client that opens streams and resets them at once,
/// thousands of times, is cut off (GOAWAY or close), and another connection
/// is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a19_http2_rapid_reset_is_cut_off() {
    let t = TestRunner::new();
    let served = serve(&t).await;
    let mut stream = h2raw::connect(served.addr).await;
    let headers = h2raw::request_headers("GET", "/healthz", &[]);
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        flood.extend(h2raw::frame(HEADERS, END_HEADERS | END_STREAM, id, &headers));
        flood.extend(h2raw::frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    // The server may close before all of it is written.
    let _ = stream.write_all(&flood).await;
    assert!(
        healthz_ok(served.addr).await,
        "another connection must be served during the flood"
    );
    let (kinds, closed) = h2raw::read_frames(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "the rapid-reset connection was not closed");
    assert!(kinds.contains(&GOAWAY), "closed without GOAWAY: {kinds:?}");
    assert!(healthz_ok(served.addr).await);
}

/// A-19 CONTINUATION flood: a header block that never ends is refused once
/// it passes the header-list limit; the server does not buffer it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a19_http2_continuation_flood_is_cut_off() {
    let t = TestRunner::new();
    let served = serve(&t).await;
    let mut stream = h2raw::connect(served.addr).await;
    let headers = h2raw::request_headers("GET", "/healthz", &[]);
    stream
        .write_all(&h2raw::frame(HEADERS, END_STREAM, 1, &headers))
        .await
        .unwrap();
    // 1,000 × 16 KiB of headers (16 MiB), never END_HEADERS.
    let filler = h2raw::header_block(&[("x-flood", &"a".repeat(100))]).repeat(150);
    let piece = h2raw::frame(CONTINUATION, 0, 1, &filler);
    let mut sent = 0usize;
    let mut cut_off = false;
    for _ in 0..1_000 {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&piece)).await {
            Ok(Ok(())) => sent += piece.len(),
            _ => {
                cut_off = true;
                break;
            }
        }
    }
    let (_, closed) = h2raw::read_frames(&mut stream, Duration::from_secs(10)).await;
    assert!(
        cut_off || closed,
        "the server took {sent} bytes of one header block and kept the connection"
    );
    assert!(healthz_ok(served.addr).await);
}

/// A-19 empty-DATA flood: a stream fed only empty DATA frames holds no slot
/// and ends at the body-read timeout (408); other connections are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a19_http2_empty_data_flood_is_bounded() {
    let t = TestRunner::with_env(&[("RUNNER_BODY_READ_TIMEOUT_MS", "500")]);
    let served = serve(&t).await;
    let mut stream = h2raw::connect(served.addr).await;
    let auth = format!("Bearer {TOKEN}");
    let headers = h2raw::request_headers("POST", "/v1/execute", &[("authorization", &auth)]);
    stream
        .write_all(&h2raw::frame(HEADERS, END_HEADERS, 1, &headers))
        .await
        .unwrap();
    let empty = h2raw::frame(DATA, 0, 1, &[]).repeat(10_000);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if stream.write_all(&empty).await.is_err() {
            break;
        }
    }
    assert!(
        healthz_ok(served.addr).await,
        "another connection must be served during the flood"
    );
    // The stream is answered 408 (HEADERS) or the connection is closed.
    let (kinds, closed) = h2raw::read_frames(&mut stream, Duration::from_secs(3)).await;
    assert!(
        closed || kinds.contains(&HEADERS),
        "the flooded stream was neither answered nor closed: {kinds:?}"
    );
    assert_eq!(t.runner.in_flight(), 0);
}
