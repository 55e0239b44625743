//! `cap:user.read` (always granted): the end user on whose behalf the
//! gateway calls, when the envelope says; `not-available` otherwise.

use std::sync::Arc;

use super::Invocation;
use super::bindings::alga::extension::{user, user_v2};
use super::bindings::types::{UserData, UserDataV2, UserError};

pub const CAPABILITY: &str = "cap:user.read";

/// The end user on whose behalf the gateway calls, when it says.
#[derive(Clone, Debug, Default)]
pub struct UserInfo {
    pub user_id: String,
    pub user_email: String,
    pub user_name: String,
    pub user_type: String,
    pub client_name: String,
    pub client_id: Option<String>,
    /// Sorted by key (compat §1).
    pub additional_fields: Vec<(String, String)>,
}

/// The execution's user, if the envelope named one.
pub type State = Option<Arc<UserInfo>>;

impl user::Host for Invocation {
    fn get_user(&mut self) -> wasmtime::Result<Result<UserData, UserError>> {
        self.count("user");
        let Some(u) = &self.caps.user else {
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
    fn get_user(&mut self) -> wasmtime::Result<Result<UserDataV2, UserError>> {
        self.count("user");
        let Some(u) = &self.caps.user else {
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
