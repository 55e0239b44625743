//! `cap:log.emit` (always granted): lines attributed by the host to tenant,
//! extension and request.
//!
//! Anything written to stdout or stderr is treated by the host as it chooses;
//! these functions are the supported way to log.

use crate::bindings::alga::extension::logging;

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    logging::log_info(message.as_ref());
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    logging::log_warn(message.as_ref());
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    logging::log_error(message.as_ref());
}
