//! `cap:user.read` (always granted): the user on whose behalf the request runs.

use serde::Serialize;

pub use crate::bindings::alga::extension::types::UserError;
use crate::bindings::alga::extension::types::{UserData, UserDataV2};
use crate::bindings::alga::extension::{user as raw_v1, user_v2 as raw_v2};

/// The calling user (`user.get-user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Tenant of the user.
    pub tenant_id: String,
    /// Name of the user's client (company).
    pub client_name: String,
    /// The user's id.
    pub user_id: String,
    /// The user's e-mail address.
    pub user_email: String,
    /// The user's display name.
    pub user_name: String,
    /// The user's type (e.g. `internal`, `client`).
    pub user_type: String,
}

/// The calling user with the v2 fields (`user-v2.get-user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserV2 {
    /// Tenant of the user.
    pub tenant_id: String,
    /// Name of the user's client (company).
    pub client_name: String,
    /// The user's id.
    pub user_id: String,
    /// The user's e-mail address.
    pub user_email: String,
    /// The user's display name.
    pub user_name: String,
    /// The user's type (e.g. `internal`, `client`).
    pub user_type: String,
    /// The user's client id, if any.
    pub client_id: Option<String>,
    /// Further attributes, sorted by key.
    pub additional_fields: Vec<(String, String)>,
}

impl From<UserData> for User {
    fn from(raw: UserData) -> Self {
        Self {
            tenant_id: raw.tenant_id,
            client_name: raw.client_name,
            user_id: raw.user_id,
            user_email: raw.user_email,
            user_name: raw.user_name,
            user_type: raw.user_type,
        }
    }
}

impl From<UserDataV2> for UserV2 {
    fn from(raw: UserDataV2) -> Self {
        Self {
            tenant_id: raw.tenant_id,
            client_name: raw.client_name,
            user_id: raw.user_id,
            user_email: raw.user_email,
            user_name: raw.user_name,
            user_type: raw.user_type,
            client_id: raw.client_id,
            additional_fields: raw.additional_fields,
        }
    }
}

/// The calling user.
///
/// # Errors
/// [`UserError::NotAvailable`] when the request carries no user,
/// [`UserError::NotAllowed`] when the host refuses.
pub fn get() -> Result<User, UserError> {
    raw_v1::get_user().map(User::from)
}

/// The calling user with client id and additional fields.
///
/// # Errors
/// As [`get`].
pub fn get_v2() -> Result<UserV2, UserError> {
    raw_v2::get_user().map(UserV2::from)
}
