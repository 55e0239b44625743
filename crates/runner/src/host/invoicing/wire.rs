//! The `invoicing` service's JSON: what the runner sends and the camelCase
//! record it accepts (unknown fields ignored, absent options `none`,
//! `fieldErrors` any JSON, handed to the guest as its JSON text).

use serde::{Deserialize, Serialize};

use crate::host::bindings::types::{
    CreateManualInvoiceInput, CreateManualInvoiceResult, DiscountType, ManualInvoiceItemInput,
};
use crate::host::host_api::{Outcome, json_text};

/// `createManualInvoice`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Create<'a> {
    client_id: &'a str,
    items: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoice_date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    po_number: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    service_id: &'a str,
    quantity: f64,
    description: &'a str,
    rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_discount: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discount_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applies_to_item_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applies_to_service_id: Option<&'a str>,
}

impl<'a> From<&'a CreateManualInvoiceInput> for Create<'a> {
    fn from(input: &'a CreateManualInvoiceInput) -> Create<'a> {
        Create {
            client_id: &input.client_id,
            items: input.items.iter().map(Item::from).collect(),
            invoice_date: input.invoice_date.as_deref(),
            due_date: input.due_date.as_deref(),
            po_number: input.po_number.as_deref(),
        }
    }
}

impl<'a> From<&'a ManualInvoiceItemInput> for Item<'a> {
    fn from(item: &'a ManualInvoiceItemInput) -> Item<'a> {
        Item {
            service_id: &item.service_id,
            quantity: item.quantity,
            description: &item.description,
            rate: item.rate,
            is_discount: item.is_discount,
            discount_type: item.discount_type.map(|d| match d {
                DiscountType::Percentage => "percentage",
                DiscountType::Fixed => "fixed",
            }),
            applies_to_item_id: item.applies_to_item_id.as_deref(),
            applies_to_service_id: item.applies_to_service_id.as_deref(),
        }
    }
}

/// The first `items[i].quantity` or `items[i].rate` that is NaN or
/// infinite (JSON has no such numbers: it would reach the host as `null`).
pub fn non_finite_field(input: &CreateManualInvoiceInput) -> Option<String> {
    input.items.iter().enumerate().find_map(|(i, item)| {
        [("quantity", item.quantity), ("rate", item.rate)]
            .into_iter()
            .find(|(_, value)| !value.is_finite())
            .map(|(name, _)| format!("items[{i}].{name}"))
    })
}

/// `create-manual-invoice-result` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceResult {
    success: bool,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    invoice_number: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    subtotal: Option<f64>,
    #[serde(default)]
    tax: Option<f64>,
    #[serde(default)]
    total: Option<f64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    field_errors: Option<serde_json::Value>,
}

impl InvoiceResult {
    /// `validation-failed` with `field-errors` `{field: why}`.
    pub fn invalid_field(field: &str, why: &str) -> InvoiceResult {
        InvoiceResult {
            field_errors: Some(serde_json::json!({ field: why })),
            ..InvoiceResult::failed("validation-failed")
        }
    }
}

impl Outcome for InvoiceResult {
    fn failed(error: &str) -> InvoiceResult {
        InvoiceResult {
            success: false,
            invoice_id: None,
            invoice_number: None,
            status: None,
            subtotal: None,
            tax: None,
            total: None,
            error: Some(error.to_string()),
            field_errors: None,
        }
    }

    fn rejected(self) -> InvoiceResult {
        InvoiceResult {
            success: false,
            error: self.error.or_else(|| Some("validation-failed".to_string())),
            ..self
        }
    }
}

impl From<InvoiceResult> for CreateManualInvoiceResult {
    fn from(r: InvoiceResult) -> CreateManualInvoiceResult {
        CreateManualInvoiceResult {
            success: r.success,
            invoice_id: r.invoice_id,
            invoice_number: r.invoice_number,
            status: r.status,
            subtotal: r.subtotal,
            tax: r.tax,
            total: r.total,
            error: r.error,
            field_errors: json_text(r.field_errors),
        }
    }
}
