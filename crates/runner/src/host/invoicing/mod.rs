//! `cap:invoice.manual.create`: manual invoices in the host product,
//! through the host API (`host_api`, service `invoicing`):
//! `create-manual-invoice(input)` → `createManualInvoice {clientId, items:
//! [{serviceId, quantity, description, rate, isDiscount?, discountType?,
//! appliesToItemId?, appliesToServiceId?}], invoiceDate?, dueDate?,
//! poNumber?}`, answered `{success, invoiceId?, invoiceNumber?, status?,
//! subtotal?, tax?, total?, error?, fieldErrors?}`.
//!
//! Failures are `success: false`, never a trap: without the grant, a host
//! API or an install id `error: "denied"`; a `quantity` or `rate` that is
//! not a finite number `validation-failed` with `field-errors` naming it,
//! before any call; the host's refusals as `host_api::outcome` says.
//!
//! - `wire`: the JSON both ways.

pub mod wire;

use super::bindings::alga::extension::invoicing;
use super::bindings::types::{CreateManualInvoiceInput, CreateManualInvoiceResult};
use super::host_api::{self, Outcome, Service};
use super::{Invocation, Prepare};

pub const CAPABILITY: &str = "cap:invoice.manual.create";

/// One execution's calls (its settings are the host API's).
pub type State = host_api::Link;

/// Only when granted, with a host API and an install id.
pub fn prepare(host_api: &host_api::Shared, request: &Prepare<'_>) -> Option<State> {
    request
        .grants
        .allows(CAPABILITY)
        .then(|| host_api.link(request, Service::Invoicing))
        .flatten()
}

impl invoicing::Host for Invocation {
    async fn create_manual_invoice(
        &mut self,
        input: CreateManualInvoiceInput,
    ) -> wasmtime::Result<CreateManualInvoiceResult> {
        self.count("invoicing");
        let Some(link) = self.caps.invoicing.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(wire::InvoiceResult::failed("denied").into());
        };
        if let Some(field) = wire::non_finite_field(&input) {
            return Ok(wire::InvoiceResult::invalid_field(&field, "must be a finite number").into());
        }
        let answer: wire::InvoiceResult =
            host_api::outcome(link, "createManualInvoice", wire::Create::from(&input)).await;
        Ok(answer.into())
    }
}
