//! Guest stdout/stderr: captured per execution (bounded), then written to the
//! log with the request's fields. Never the host's own stdio.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::limits::MAX_GUEST_OUTPUT_BYTES;

/// One captured output stream. Clones share the buffer.
#[derive(Clone, Default)]
pub struct CapturedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    fn append(&self, data: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_GUEST_OUTPUT_BYTES.saturating_sub(captured.bytes.len());
        let take = room.min(data.len());
        captured.bytes.extend_from_slice(&data[..take]);
        captured.dropped += data.len() - take;
    }

    /// The captured text split into lines, and how many bytes were dropped.
    pub fn take_lines(&self) -> (Vec<String>, usize) {
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut captured.bytes);
        let dropped = std::mem::take(&mut captured.dropped);
        let text = String::from_utf8_lossy(&bytes);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        (lines, dropped)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        // Always accept: output past the cap is counted, not an error, so a
        // chatty guest's `println!` never turns into a trap.
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_GUEST_OUTPUT_BYTES)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_and_counted() {
        let out = CapturedOutput::default();
        out.append(b"one\ntwo\n");
        out.append(&vec![b'x'; MAX_GUEST_OUTPUT_BYTES]);
        let (lines, dropped) = out.take_lines();
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(dropped, 8);
        assert_eq!(out.take_lines().0.len(), 0);
    }
}
