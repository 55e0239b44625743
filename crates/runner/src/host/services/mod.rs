//! `cap:service.read`: the host product's services and products, read
//! through the host API (`host_api`, service `services`):
//!
//! - `list-services(input)` → `list {input: {search?, itemKind?, isActive?, billingMethod?, page, pageSize}, user}`,
//!   answered `{items, totalCount, page, pageSize}`;
//! - `get-service(id)` → `get {serviceId, user}`, answered the service or
//!   `null` (a 404 is `none` too).
//!
//! Enums travel as their WIT names (`service`, `hourly`). `user`, paging
//! and errors as in `clients`: `page` ≥ 1 (default 1), 1 ≤ `page-size` ≤
//! 100 (default 25), else `invalid-input` before any call; 401/403
//! `not-allowed`, 400 `invalid-input`, anything else `internal`; without
//! the grant, a host API or an install id, `not-allowed`.
//!
//! - `wire`: the JSON both ways.

pub mod wire;

use super::bindings::alga::extension::services;
use super::bindings::types::{ServiceReadError, ServiceSummary, ServicesListInput, ServicesListResult};
use super::host_api::{self, Caller, Refusal, Service};
use super::{Invocation, Prepare};

pub const CAPABILITY: &str = "cap:service.read";

/// One execution's calls (its settings are the host API's).
pub type State = host_api::Link;

/// Only when granted, with a host API and an install id.
pub fn prepare(host_api: &host_api::Shared, request: &Prepare<'_>) -> Option<State> {
    request
        .grants
        .allows(CAPABILITY)
        .then(|| host_api.link(request, Service::Services))
        .flatten()
}

fn error(refusal: Refusal) -> ServiceReadError {
    match refusal {
        Refusal::Denied => ServiceReadError::NotAllowed,
        Refusal::Invalid { .. } => ServiceReadError::InvalidInput,
        Refusal::NotFound | Refusal::QuotaExceeded | Refusal::Internal => ServiceReadError::Internal,
    }
}

impl services::Host for Invocation {
    async fn list_services(
        &mut self,
        input: ServicesListInput,
    ) -> wasmtime::Result<Result<ServicesListResult, ServiceReadError>> {
        self.count("services");
        let Some(link) = self.caps.services.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(ServiceReadError::NotAllowed));
        };
        let Some((page, page_size)) = host_api::paging(input.page, input.page_size) else {
            return Ok(Err(ServiceReadError::InvalidInput));
        };
        let fields = host_api::ListCall {
            input: wire::ListInput {
                search: input.search.as_deref(),
                item_kind: input.item_kind.map(wire::ItemKind::from),
                is_active: input.is_active,
                billing_method: input.billing_method.map(wire::BillingMethod::from),
                page,
                page_size,
            },
            user: Caller::of(self.caps.user.as_deref()),
        };
        let answer = link.call::<host_api::Page<wire::ServiceRecord>>("list", fields).await;
        Ok(answer.map(ServicesListResult::from).map_err(error))
    }

    async fn get_service(
        &mut self,
        service_id: String,
    ) -> wasmtime::Result<Result<Option<ServiceSummary>, ServiceReadError>> {
        self.count("services");
        let Some(link) = self.caps.services.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(ServiceReadError::NotAllowed));
        };
        let fields = wire::Get {
            service_id: &service_id,
            user: Caller::of(self.caps.user.as_deref()),
        };
        Ok(match link.call::<Option<wire::ServiceRecord>>("get", fields).await {
            Ok(service) => Ok(service.map(ServiceSummary::from)),
            Err(Refusal::NotFound) => Ok(None),
            Err(refusal) => Err(error(refusal)),
        })
    }
}
