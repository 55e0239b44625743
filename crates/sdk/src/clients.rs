//! `cap:client.read`: the host product's clients (read-only), as the
//! calling user may see them.

use serde::Serialize;

use crate::bindings::alga::extension::clients as raw;
pub use crate::bindings::alga::extension::types::ClientReadError;
use crate::bindings::alga::extension::types::{ClientSummary, ClientsListInput, ClientsListResult};

/// What [`list`] asks for. `Default` asks for the first page of 25 with
/// the host's default filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListClients {
    /// Text the client's name must contain.
    pub search: Option<String>,
    /// Whether inactive clients are listed too.
    pub include_inactive: Option<bool>,
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Clients per page, 1 to 100 (default 25).
    pub page_size: Option<u32>,
}

/// One client (`client-summary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// The client's id.
    pub client_id: String,
    /// The client's name.
    pub client_name: String,
    /// The client's type (e.g. `company`), if set.
    pub client_type: Option<String>,
    /// Whether the client is inactive.
    pub is_inactive: bool,
    /// The client's default currency (ISO 4217), if set.
    pub default_currency_code: Option<String>,
    /// The account manager's user id, if any.
    pub account_manager_id: Option<String>,
    /// The account manager's name, if any.
    pub account_manager_name: Option<String>,
    /// Where the client's invoices go, if set.
    pub billing_email: Option<String>,
}

/// One page of clients (`clients-list-result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientPage {
    /// The clients on this page.
    pub items: Vec<Client>,
    /// Clients matching the query on all pages.
    pub total_count: u32,
    /// This page's number.
    pub page: u32,
    /// The page size used.
    pub page_size: u32,
}

impl From<ClientSummary> for Client {
    fn from(raw: ClientSummary) -> Self {
        Self {
            client_id: raw.client_id,
            client_name: raw.client_name,
            client_type: raw.client_type,
            is_inactive: raw.is_inactive,
            default_currency_code: raw.default_currency_code,
            account_manager_id: raw.account_manager_id,
            account_manager_name: raw.account_manager_name,
            billing_email: raw.billing_email,
        }
    }
}

impl From<ClientsListResult> for ClientPage {
    fn from(raw: ClientsListResult) -> Self {
        Self {
            items: raw.items.into_iter().map(Client::from).collect(),
            total_count: raw.total_count,
            page: raw.page,
            page_size: raw.page_size,
        }
    }
}

/// One page of clients.
///
/// # Errors
/// [`ClientReadError::NotAllowed`] (without the capability, or refused by
/// the host), [`ClientReadError::InvalidInput`] (a page below 1, a page
/// size outside 1 to 100, or refused by the host),
/// [`ClientReadError::Internal`].
pub fn list(query: &ListClients) -> Result<ClientPage, ClientReadError> {
    let input = ClientsListInput {
        search: query.search.clone(),
        include_inactive: query.include_inactive,
        page: query.page,
        page_size: query.page_size,
    };
    raw::list_clients(&input).map(ClientPage::from)
}

/// The client `client_id`, or `None` if there is none.
///
/// # Errors
/// As [`list`].
pub fn get(client_id: &str) -> Result<Option<Client>, ClientReadError> {
    raw::get_client(client_id).map(|client| client.map(Client::from))
}
