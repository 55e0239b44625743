//! The WIT `Host` implementations for the `alga:extension` interfaces.
//!
//! Always-granted capabilities (`context.read`, `log.emit`, `user.read`) are
//! implemented here. `secrets`, `http`, `storage` and `ui-proxy` are linked
//! so every guest instantiates, and answer the typed deny error of compat §1
//! (never a trap) until their capability exists in this runner.

use super::Invocation;
use super::bindings::alga::extension::{context, http, logging, secrets, storage, types, ui_proxy, user, user_v2};
use super::bindings::types::{
    ContextData, HttpError, HttpRequest, HttpResponse, ProxyError, SecretError, StorageEntry, StorageError, UserData,
    UserDataV2, UserError,
};
use crate::limits::{MAX_GUEST_LOG_LINES, MAX_GUEST_LOG_MESSAGE_BYTES};

type HostResult<T> = wasmtime::Result<T>;

impl types::Host for Invocation {}

impl context::Host for Invocation {
    fn get_context(&mut self) -> HostResult<ContextData> {
        let r = &self.request;
        Ok(ContextData {
            request_id: Some(r.request_id.clone()),
            tenant_id: r.tenant_id.clone(),
            extension_id: r.extension_id.clone(),
            install_id: r.install_id.clone(),
            version_id: r.version_id.clone(),
        })
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
        if self.log_lines >= MAX_GUEST_LOG_LINES {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
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
    }
}

impl logging::Host for Invocation {
    fn log_info(&mut self, message: String) -> HostResult<()> {
        self.guest_log(Level::Info, message);
        Ok(())
    }

    fn log_warn(&mut self, message: String) -> HostResult<()> {
        self.guest_log(Level::Warn, message);
        Ok(())
    }

    fn log_error(&mut self, message: String) -> HostResult<()> {
        self.guest_log(Level::Error, message);
        Ok(())
    }
}

impl user::Host for Invocation {
    fn get_user(&mut self) -> HostResult<Result<UserData, UserError>> {
        let Some(u) = &self.user else {
            return Ok(Err(UserError::NotAvailable));
        };
        Ok(Ok(UserData {
            tenant_id: self.request.tenant_id.clone(),
            client_name: u.client_name.clone(),
            user_id: u.user_id.clone(),
            user_email: u.user_email.clone(),
            user_name: u.user_name.clone(),
            user_type: u.user_type.clone(),
        }))
    }
}

impl user_v2::Host for Invocation {
    fn get_user(&mut self) -> HostResult<Result<UserDataV2, UserError>> {
        let Some(u) = &self.user else {
            return Ok(Err(UserError::NotAvailable));
        };
        Ok(Ok(UserDataV2 {
            tenant_id: self.request.tenant_id.clone(),
            client_name: u.client_name.clone(),
            user_id: u.user_id.clone(),
            user_email: u.user_email.clone(),
            user_name: u.user_name.clone(),
            user_type: u.user_type.clone(),
            client_id: u.client_id.clone(),
            additional_fields: u.additional_fields.clone(),
        }))
    }
}

impl secrets::Host for Invocation {
    async fn get(&mut self, _key: String) -> HostResult<Result<String, SecretError>> {
        Ok(Err(SecretError::Denied))
    }

    async fn list_keys(&mut self) -> HostResult<Vec<String>> {
        Ok(Vec::new())
    }
}

impl http::Host for Invocation {
    async fn fetch(&mut self, _request: HttpRequest) -> HostResult<Result<HttpResponse, HttpError>> {
        Ok(Err(HttpError::NotAllowed))
    }
}

impl storage::Host for Invocation {
    async fn get(&mut self, _namespace: String, _key: String) -> HostResult<Result<StorageEntry, StorageError>> {
        Ok(Err(StorageError::Denied))
    }

    async fn put(&mut self, _entry: StorageEntry) -> HostResult<Result<StorageEntry, StorageError>> {
        Ok(Err(StorageError::Denied))
    }

    async fn delete(&mut self, _namespace: String, _key: String) -> HostResult<Result<(), StorageError>> {
        Ok(Err(StorageError::Denied))
    }

    async fn list_entries(
        &mut self,
        _namespace: String,
        _cursor: Option<String>,
    ) -> HostResult<Result<Vec<StorageEntry>, StorageError>> {
        Ok(Err(StorageError::Denied))
    }
}

impl ui_proxy::Host for Invocation {
    async fn call_route(
        &mut self,
        _route: String,
        _payload: Option<Vec<u8>>,
    ) -> HostResult<Result<Vec<u8>, ProxyError>> {
        Ok(Err(ProxyError::Denied))
    }
}
