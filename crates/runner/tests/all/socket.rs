//! Tests through a real loopback socket: what only hyper's connection
//! handling can show (header limits, slowloris, chunked bodies).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn execute_over_a_real_socket() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let served = serve(&t).await;
    let body = envelope(&digest, "GET", "/").to_string();
    let response = raw_exchange(served.addr, &http_request(&body), Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("x-request-id:"), "{response}");
}

/// a chunked body without Content-Length is cut off at the limit.
#[tokio::test]
async fn a13_chunked_body_over_limit() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_REQUEST_BYTES", "1024")]);
    let served = serve(&t).await;
    let mut request = format!(
        "POST /v1/execute HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    // The server may close before we finish writing: that is fine.
    let _ = stream.write_all(&request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

/// too many headers → 431; a single huge header → 431; obs-fold → 400.
/// The guest never runs in any of these.
#[tokio::test]
async fn a16_oversized_and_malformed_headers() {
    let t = TestRunner::new();
    let served = serve(&t).await;

    let mut many = String::from("POST /v1/execute HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-h-{i}: v\r\n"));
    }
    many.push_str("content-length: 0\r\n\r\n");
    let response = raw_exchange(served.addr, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    let huge = format!(
        "POST /v1/execute HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let response = raw_exchange(served.addr, huge.as_bytes(), Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    let folded = "POST /v1/execute HTTP/1.1\r\nhost: x\r\nx-a: one\r\n two\r\ncontent-length: 0\r\n\r\n";
    let response = raw_exchange(served.addr, folded.as_bytes(), Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

/// connections that send partial headers and go silent are closed at
/// the header-read timeout while normal clients keep getting answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a17_slowloris_connections_are_closed() {
    let t = TestRunner::with_env(&[("RUNNER_HEADER_READ_TIMEOUT_MS", "300")]);
    let digest = t.publish_fixture("echo");
    let served = serve(&t).await;

    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
        stream
            .write_all(b"POST /v1/execute HTTP/1.1\r\nhost: x\r\nx-partial: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A normal client is served while the slow ones hang.
    let body = envelope(&digest, "GET", "/").to_string();
    let response = raw_exchange(served.addr, &http_request(&body), Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Every slow connection is closed by the server (EOF or reset) soon
    // after the timeout; none stays open for the 5 s we are willing to wait.
    for mut stream in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slowloris connection was still open after 5 s");
    }
}
