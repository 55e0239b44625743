//! The Redis connection the fleet-wide quotas share (the rate limit's
//! buckets and the CPU budget), and their failure rule: when Redis does not
//! answer within [`RATE_LIMIT_REDIS_TIMEOUT`], the decision is made without
//! it (fail open), and Redis is skipped for [`RATE_LIMIT_REDIS_RETRY_INTERVAL`]
//! so a dead Redis costs one timeout per interval, not one per request.

use std::sync::Mutex;
use std::time::Instant;

use crate::limits::{RATE_LIMIT_REDIS_RETRY_INTERVAL, RATE_LIMIT_REDIS_TIMEOUT};

/// One lazily connected Redis, shared by the scripts of one quota.
pub struct SharedRedis {
    /// What the quota is, for the fail-open warning.
    what: &'static str,
    client: redis::Client,
    /// Created on first use (it needs the Tokio runtime); reconnects by
    /// itself after I/O errors.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// After a failure Redis is skipped until this instant.
    pub(super) paused_until: Mutex<Option<Instant>>,
}

impl SharedRedis {
    /// # Errors
    /// An unusable URL (already refused by `Config::load`).
    pub fn open(url: &str, what: &'static str) -> Result<SharedRedis, redis::RedisError> {
        Ok(SharedRedis {
            what,
            client: redis::Client::open(url)?,
            connection: tokio::sync::OnceCell::new(),
            paused_until: Mutex::new(None),
        })
    }

    /// Run `invocation`; `None` when Redis is paused or did not answer in
    /// time (the caller decides without it).
    pub async fn invoke<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Option<T> {
        let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let answer = tokio::time::timeout(RATE_LIMIT_REDIS_TIMEOUT, async {
            let mut connection = self.connection().await?.clone();
            invocation.invoke_async::<T>(&mut connection).await
        })
        .await;
        let error = match answer {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", RATE_LIMIT_REDIS_TIMEOUT.as_millis()),
        };
        *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + RATE_LIMIT_REDIS_RETRY_INTERVAL);
        tracing::warn!(
            %error,
            quota = self.what,
            retry_in_ms = RATE_LIMIT_REDIS_RETRY_INTERVAL.as_millis() as u64,
            "Redis unavailable; deciding without the fleet-wide state (fail open)"
        );
        None
    }

    async fn connection(&self) -> redis::RedisResult<&redis::aio::ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(RATE_LIMIT_REDIS_TIMEOUT))
                    .set_response_timeout(Some(RATE_LIMIT_REDIS_TIMEOUT))
                    // Our own pause handles retries; a request never waits for reconnect backoff.
                    .set_number_of_retries(0);
                redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
    }
}
