//! The `services` service's JSON: what the runner sends and the camelCase
//! records it accepts (unknown fields ignored, absent options `none`,
//! enums as their WIT names).

use serde::{Deserialize, Serialize};

use crate::host::bindings::types::{ServiceBillingMethod, ServiceItemKind, ServiceSummary, ServicesListResult};
use crate::host::host_api::{Caller, Page};

/// `service-item-kind` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Service,
    Product,
}

/// `service-billing-method` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingMethod {
    Fixed,
    Hourly,
    Usage,
}

impl From<ServiceItemKind> for ItemKind {
    fn from(kind: ServiceItemKind) -> ItemKind {
        match kind {
            ServiceItemKind::Service => ItemKind::Service,
            ServiceItemKind::Product => ItemKind::Product,
        }
    }
}

impl From<ItemKind> for ServiceItemKind {
    fn from(kind: ItemKind) -> ServiceItemKind {
        match kind {
            ItemKind::Service => ServiceItemKind::Service,
            ItemKind::Product => ServiceItemKind::Product,
        }
    }
}

impl From<ServiceBillingMethod> for BillingMethod {
    fn from(method: ServiceBillingMethod) -> BillingMethod {
        match method {
            ServiceBillingMethod::Fixed => BillingMethod::Fixed,
            ServiceBillingMethod::Hourly => BillingMethod::Hourly,
            ServiceBillingMethod::Usage => BillingMethod::Usage,
        }
    }
}

impl From<BillingMethod> for ServiceBillingMethod {
    fn from(method: BillingMethod) -> ServiceBillingMethod {
        match method {
            BillingMethod::Fixed => ServiceBillingMethod::Fixed,
            BillingMethod::Hourly => ServiceBillingMethod::Hourly,
            BillingMethod::Usage => ServiceBillingMethod::Usage,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_kind: Option<ItemKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_method: Option<BillingMethod>,
    pub page: u32,
    pub page_size: u32,
}

/// `get`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Get<'a> {
    pub service_id: &'a str,
    pub user: Option<Caller<'a>>,
}

/// `service-summary` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    service_id: String,
    service_name: String,
    item_kind: ItemKind,
    billing_method: BillingMethod,
    #[serde(default)]
    service_type_id: Option<String>,
    #[serde(default)]
    service_type_name: Option<String>,
    default_rate: f64,
    unit_of_measure: String,
    is_active: bool,
    #[serde(default)]
    sku: Option<String>,
}

impl From<ServiceRecord> for ServiceSummary {
    fn from(s: ServiceRecord) -> ServiceSummary {
        ServiceSummary {
            service_id: s.service_id,
            service_name: s.service_name,
            item_kind: s.item_kind.into(),
            billing_method: s.billing_method.into(),
            service_type_id: s.service_type_id,
            service_type_name: s.service_type_name,
            default_rate: s.default_rate,
            unit_of_measure: s.unit_of_measure,
            is_active: s.is_active,
            sku: s.sku,
        }
    }
}

impl From<Page<ServiceRecord>> for ServicesListResult {
    fn from(p: Page<ServiceRecord>) -> ServicesListResult {
        ServicesListResult {
            items: p.items.into_iter().map(ServiceSummary::from).collect(),
            total_count: p.total_count,
            page: p.page,
            page_size: p.page_size,
        }
    }
}
