//! `cap:invoice.manual.create`: manual invoices in the host product.

use serde::Serialize;

use crate::bindings::alga::extension::invoicing as raw;
pub use crate::bindings::alga::extension::types::DiscountType;
use crate::bindings::alga::extension::types::{
    CreateManualInvoiceInput, CreateManualInvoiceResult, ManualInvoiceItemInput,
};

/// A manual invoice to create (`create-manual-invoice-input`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManualInvoice {
    /// The client invoiced.
    pub client_id: String,
    /// Its lines.
    pub items: Vec<InvoiceItem>,
    /// `YYYY-MM-DD`; the host's default (today) when `None`.
    pub invoice_date: Option<String>,
    /// `YYYY-MM-DD`; the host's default when `None`.
    pub due_date: Option<String>,
    /// The client's purchase order number, if any.
    pub po_number: Option<String>,
}

/// One line of a [`ManualInvoice`] (`manual-invoice-item-input`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvoiceItem {
    /// The service billed.
    pub service_id: String,
    /// How many units (a finite number).
    pub quantity: f64,
    /// The line's text.
    pub description: String,
    /// Price per unit (a finite number).
    pub rate: f64,
    /// Whether the line is a discount.
    pub is_discount: Option<bool>,
    /// A discount's kind.
    pub discount_type: Option<DiscountType>,
    /// The line a discount applies to.
    pub applies_to_item_id: Option<String>,
    /// The service a discount applies to.
    pub applies_to_service_id: Option<String>,
}

/// What [`create_manual_invoice`] answers (`create-manual-invoice-result`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceResult {
    /// Whether the invoice was created.
    pub success: bool,
    /// The new invoice's id.
    pub invoice_id: Option<String>,
    /// The new invoice's number.
    pub invoice_number: Option<String>,
    /// The new invoice's status (e.g. `draft`).
    pub status: Option<String>,
    /// Amounts the host computed.
    pub subtotal: Option<f64>,
    pub tax: Option<f64>,
    pub total: Option<f64>,
    /// Why it failed: the host's message, or `denied`, `not-found`,
    /// `validation-failed`, `quota-exceeded`, `internal`.
    pub error: Option<String>,
    /// Field errors as JSON text (an object of field → message).
    pub field_errors: Option<String>,
}

impl From<CreateManualInvoiceResult> for InvoiceResult {
    fn from(raw: CreateManualInvoiceResult) -> Self {
        Self {
            success: raw.success,
            invoice_id: raw.invoice_id,
            invoice_number: raw.invoice_number,
            status: raw.status,
            subtotal: raw.subtotal,
            tax: raw.tax,
            total: raw.total,
            error: raw.error,
            field_errors: raw.field_errors,
        }
    }
}

/// Creates a manual invoice. Failures are `success: false` with `error`
/// (`denied` without the capability), never a panic.
pub fn create_manual_invoice(invoice: &ManualInvoice) -> InvoiceResult {
    let input = CreateManualInvoiceInput {
        client_id: invoice.client_id.clone(),
        items: invoice
            .items
            .iter()
            .map(|item| ManualInvoiceItemInput {
                service_id: item.service_id.clone(),
                quantity: item.quantity,
                description: item.description.clone(),
                rate: item.rate,
                is_discount: item.is_discount,
                discount_type: item.discount_type,
                applies_to_item_id: item.applies_to_item_id.clone(),
                applies_to_service_id: item.applies_to_service_id.clone(),
            })
            .collect(),
        invoice_date: invoice.invoice_date.clone(),
        due_date: invoice.due_date.clone(),
        po_number: invoice.po_number.clone(),
    };
    raw::create_manual_invoice(&input).into()
}
