//! `cap:log.emit` (always granted): guest log lines and captured
//! stdout/stderr, written to the runner's log with the request's fields
//! (capped per execution) and, when `RUNNER_DEBUG_REDIS_URL` is set, copied
//! to the debug sink (`debug_sink`).
//!
//! - `output`: the bounded stdout/stderr capture behind the WASI context;
//! - `debug_sink`: the copy to Redis streams for live debugging;
//! - `metrics`: the debug sink's written and dropped counters.

pub mod debug_sink;
mod metrics;
pub mod output;

use super::bindings::alga::extension::logging;
use super::{Invocation, RequestInfo};
use crate::limits::{MAX_GUEST_LOG_LINES, MAX_GUEST_LOG_MESSAGE_BYTES};
use output::CapturedOutput;

pub const CAPABILITY: &str = "cap:log.emit";

/// `RUNNER_DEBUG_REDIS_URL`: copy guest log and output lines to Redis
/// streams `ext-debug:{tenant}:{extension}` (redacted in `Debug`).
#[derive(Clone, Default)]
pub struct Settings {
    pub debug_redis_url: Option<String>,
}

impl Settings {
    pub fn from_source(source: &crate::config::source::Source) -> Settings {
        let debug_redis_url = source.text("RUNNER_DEBUG_REDIS_URL").map(|url| {
            if let Err(why) = debug_sink::check_url(url) {
                source.problem(format!("RUNNER_DEBUG_REDIS_URL: {why}"));
            }
            url.to_string()
        });
        Settings { debug_redis_url }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("logging::Settings")
            .field("debug_redis_url", &self.debug_redis_url.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One execution's captured output and log counters.
pub struct State {
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    lines: u32,
    dropped: u32,
    debug_sink: Option<debug_sink::DebugSink>,
}

impl State {
    pub fn new(debug_sink: Option<debug_sink::DebugSink>) -> State {
        State {
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            lines: 0,
            dropped: 0,
            debug_sink,
        }
    }

    /// Queue one guest line for the debug sink, if there is one.
    fn debug_line(&self, r: &RequestInfo, level: &'static str, source: &'static str, message: &str) {
        if let Some(sink) = &self.debug_sink {
            sink.send(debug_sink::DebugLine {
                tenant: r.tenant_id.clone(),
                extension: r.extension_id.clone(),
                request_id: r.request_id.clone(),
                version: r.version_id.clone(),
                level,
                source,
                message: message.to_string(),
            });
        }
    }

    /// Write captured guest output into the log, attributed to the request.
    /// Returns whether any output or log line was dropped by the caps.
    pub fn flush(&self, r: &RequestInfo) -> bool {
        let mut truncated = self.dropped > 0;
        for (stream, captured) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (lines, dropped) = captured.take_lines();
            for line in lines {
                tracing::info!(target: "ext_runner::guest", stream, request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{line}");
                self.debug_line(r, "info", stream, &line);
            }
            truncated |= dropped > 0;
            if dropped > 0 {
                tracing::warn!(target: "ext_runner::guest", stream, request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, dropped_bytes = dropped, "guest output over the cap was dropped");
            }
        }
        if self.dropped > 0 {
            tracing::warn!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, dropped_lines = self.dropped, "guest log lines over the cap were dropped");
        }
        truncated
    }
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Error,
}

impl Invocation {
    fn guest_log(&mut self, level: Level, mut message: String) {
        self.count("logging");
        let state = &mut self.caps.logging;
        if state.lines >= MAX_GUEST_LOG_LINES {
            state.dropped += 1;
            return;
        }
        state.lines += 1;
        if message.len() > MAX_GUEST_LOG_MESSAGE_BYTES {
            let mut end = MAX_GUEST_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("…[truncated]");
        }
        let r = &self.request;
        match level {
            Level::Info => {
                tracing::info!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
        }
        let level = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        state.debug_line(r, level, "log", &message);
    }
}

impl logging::Host for Invocation {
    fn log_info(&mut self, message: String) -> wasmtime::Result<()> {
        self.guest_log(Level::Info, message);
        Ok(())
    }

    fn log_warn(&mut self, message: String) -> wasmtime::Result<()> {
        self.guest_log(Level::Warn, message);
        Ok(())
    }

    fn log_error(&mut self, message: String) -> wasmtime::Result<()> {
        self.guest_log(Level::Error, message);
        Ok(())
    }
}
