//! `cap:context.read` (always granted): who is calling — request, tenant,
//! extension, install and version ids.

use super::Invocation;
use super::bindings::alga::extension::{context, types};
use super::bindings::types::ContextData;

pub const CAPABILITY: &str = "cap:context.read";

impl types::Host for Invocation {}

impl context::Host for Invocation {
    fn get_context(&mut self) -> wasmtime::Result<ContextData> {
        self.count("context");
        Ok(self.request.context_data())
    }
}
