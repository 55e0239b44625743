//! `cap:client.read`: the host product's clients, read through the host
//! API (`host_api`, service `clients`):
//!
//! - `list-clients(input)` → `list {input: {search?, includeInactive?, page, pageSize}, user}`,
//!   answered `{items, totalCount, page, pageSize}`;
//! - `get-client(id)` → `get {clientId, user}`, answered the client or
//!   `null` (a 404 is `none` too).
//!
//! `user` is `{userId, userType}` of the envelope's user, `null` without
//! one. Paging is checked before any call: `page` ≥ 1 (default 1),
//! 1 ≤ `page-size` ≤ 100 (default 25), else `invalid-input`. Errors:
//! 401/403 `not-allowed`, 400 `invalid-input`, anything else `internal`;
//! without the grant, a host API or an install id, `not-allowed`.
//!
//! - `wire`: the JSON both ways.

pub mod wire;

use super::bindings::alga::extension::clients;
use super::bindings::types::{ClientReadError, ClientSummary, ClientsListInput, ClientsListResult};
use super::host_api::{self, Caller, Refusal, Service};
use super::{Invocation, Prepare};

pub const CAPABILITY: &str = "cap:client.read";

/// One execution's calls (its settings are the host API's).
pub type State = host_api::Link;

/// Only when granted, with a host API and an install id.
pub fn prepare(host_api: &host_api::Shared, request: &Prepare<'_>) -> Option<State> {
    request
        .grants
        .allows(CAPABILITY)
        .then(|| host_api.link(request, Service::Clients))
        .flatten()
}

fn error(refusal: Refusal) -> ClientReadError {
    match refusal {
        Refusal::Denied => ClientReadError::NotAllowed,
        Refusal::Invalid { .. } => ClientReadError::InvalidInput,
        Refusal::NotFound | Refusal::QuotaExceeded | Refusal::Internal => ClientReadError::Internal,
    }
}

impl clients::Host for Invocation {
    async fn list_clients(
        &mut self,
        input: ClientsListInput,
    ) -> wasmtime::Result<Result<ClientsListResult, ClientReadError>> {
        self.count("clients");
        let Some(link) = self.caps.clients.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(ClientReadError::NotAllowed));
        };
        let Some((page, page_size)) = host_api::paging(input.page, input.page_size) else {
            return Ok(Err(ClientReadError::InvalidInput));
        };
        let fields = host_api::ListCall {
            input: wire::ListInput {
                search: input.search.as_deref(),
                include_inactive: input.include_inactive,
                page,
                page_size,
            },
            user: Caller::of(self.caps.user.as_deref()),
        };
        let answer = link.call::<host_api::Page<wire::Client>>("list", fields).await;
        Ok(answer.map(ClientsListResult::from).map_err(error))
    }

    async fn get_client(
        &mut self,
        client_id: String,
    ) -> wasmtime::Result<Result<Option<ClientSummary>, ClientReadError>> {
        self.count("clients");
        let Some(link) = self.caps.clients.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(ClientReadError::NotAllowed));
        };
        let fields = wire::Get {
            client_id: &client_id,
            user: Caller::of(self.caps.user.as_deref()),
        };
        Ok(match link.call::<Option<wire::Client>>("get", fields).await {
            Ok(client) => Ok(client.map(ClientSummary::from)),
            Err(Refusal::NotFound) => Ok(None),
            Err(refusal) => Err(error(refusal)),
        })
    }
}
