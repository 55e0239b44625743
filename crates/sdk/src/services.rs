//! `cap:service.read`: the host product's services and products
//! (read-only), as the calling user may see them.

use serde::{Serialize, Serializer};

use crate::bindings::alga::extension::services as raw;
pub use crate::bindings::alga::extension::types::{ServiceBillingMethod, ServiceItemKind, ServiceReadError};
use crate::bindings::alga::extension::types::{ServiceSummary, ServicesListInput, ServicesListResult};

/// What [`list`] asks for. `Default` asks for the first page of 25 with
/// the host's default filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListServices {
    /// Text the service's name must contain.
    pub search: Option<String>,
    /// Only services, or only products.
    pub item_kind: Option<ServiceItemKind>,
    /// Only active (`true`) or inactive (`false`) ones.
    pub is_active: Option<bool>,
    /// Only those billed this way.
    pub billing_method: Option<ServiceBillingMethod>,
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Services per page, 1 to 100 (default 25).
    pub page_size: Option<u32>,
}

/// One service or product (`service-summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// The service's id.
    pub service_id: String,
    /// The service's name.
    pub service_name: String,
    /// A service or a product (serialized as `service` / `product`).
    #[serde(serialize_with = "wit_name")]
    pub item_kind: ServiceItemKind,
    /// How it is billed (serialized as `fixed` / `hourly` / `usage`).
    #[serde(serialize_with = "wit_name")]
    pub billing_method: ServiceBillingMethod,
    /// Its service type's id, if any.
    pub service_type_id: Option<String>,
    /// Its service type's name, if any.
    pub service_type_name: Option<String>,
    /// The default rate.
    pub default_rate: f64,
    /// The unit the rate is per (e.g. `hour`).
    pub unit_of_measure: String,
    /// Whether it is active.
    pub is_active: bool,
    /// The stock-keeping unit, if any.
    pub sku: Option<String>,
}

/// One page of services (`services-list-result`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePage {
    /// The services on this page.
    pub items: Vec<Service>,
    /// Services matching the query on all pages.
    pub total_count: u32,
    /// This page's number.
    pub page: u32,
    /// The page size used.
    pub page_size: u32,
}

/// Serializes a WIT enum as its case name.
fn wit_name<S: Serializer, E: WitName>(value: &E, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.wit_name())
}

trait WitName {
    fn wit_name(&self) -> &'static str;
}

impl WitName for ServiceItemKind {
    fn wit_name(&self) -> &'static str {
        match self {
            ServiceItemKind::Service => "service",
            ServiceItemKind::Product => "product",
        }
    }
}

impl WitName for ServiceBillingMethod {
    fn wit_name(&self) -> &'static str {
        match self {
            ServiceBillingMethod::Fixed => "fixed",
            ServiceBillingMethod::Hourly => "hourly",
            ServiceBillingMethod::Usage => "usage",
        }
    }
}

impl From<ServiceSummary> for Service {
    fn from(raw: ServiceSummary) -> Self {
        Self {
            service_id: raw.service_id,
            service_name: raw.service_name,
            item_kind: raw.item_kind,
            billing_method: raw.billing_method,
            service_type_id: raw.service_type_id,
            service_type_name: raw.service_type_name,
            default_rate: raw.default_rate,
            unit_of_measure: raw.unit_of_measure,
            is_active: raw.is_active,
            sku: raw.sku,
        }
    }
}

impl From<ServicesListResult> for ServicePage {
    fn from(raw: ServicesListResult) -> Self {
        Self {
            items: raw.items.into_iter().map(Service::from).collect(),
            total_count: raw.total_count,
            page: raw.page,
            page_size: raw.page_size,
        }
    }
}

/// One page of services.
///
/// # Errors
/// [`ServiceReadError::NotAllowed`] (without the capability, or refused by
/// the host), [`ServiceReadError::InvalidInput`] (a page below 1, a page
/// size outside 1 to 100, or refused by the host),
/// [`ServiceReadError::Internal`].
pub fn list(query: &ListServices) -> Result<ServicePage, ServiceReadError> {
    let input = ServicesListInput {
        search: query.search.clone(),
        item_kind: query.item_kind,
        is_active: query.is_active,
        billing_method: query.billing_method,
        page: query.page,
        page_size: query.page_size,
    };
    raw::list_services(&input).map(ServicePage::from)
}

/// The service `service_id`, or `None` if there is none.
///
/// # Errors
/// As [`list`].
pub fn get(service_id: &str) -> Result<Option<Service>, ServiceReadError> {
    raw::get_service(service_id).map(|service| service.map(Service::from))
}
