//! `cap:secrets.get`: the install's secrets.

use crate::bindings::alga::extension::secrets as raw;
pub use crate::bindings::alga::extension::types::SecretError;

/// The value of secret `key`.
///
/// # Errors
/// [`SecretError::Missing`] if there is no such secret, [`SecretError::Denied`]
/// without the capability, [`SecretError::Expired`] or [`SecretError::Internal`].
pub fn get(key: &str) -> Result<String, SecretError> {
    raw::get(key)
}

/// The names of the secrets available to this install (empty without the capability).
pub fn list_keys() -> Vec<String> {
    raw::list_keys()
}
