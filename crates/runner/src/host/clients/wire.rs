//! The `clients` service's JSON: what the runner sends and the camelCase
//! records it accepts (unknown fields ignored, absent options `none`).

use serde::{Deserialize, Serialize};

use crate::host::bindings::types::{ClientSummary, ClientsListResult};
use crate::host::host_api::{Caller, Page};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_inactive: Option<bool>,
    pub page: u32,
    pub page_size: u32,
}

/// `get`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Get<'a> {
    pub client_id: &'a str,
    pub user: Option<Caller<'a>>,
}

/// `client-summary` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    client_id: String,
    client_name: String,
    #[serde(default)]
    client_type: Option<String>,
    is_inactive: bool,
    #[serde(default)]
    default_currency_code: Option<String>,
    #[serde(default)]
    account_manager_id: Option<String>,
    #[serde(default)]
    account_manager_name: Option<String>,
    #[serde(default)]
    billing_email: Option<String>,
}

impl From<Client> for ClientSummary {
    fn from(c: Client) -> ClientSummary {
        ClientSummary {
            client_id: c.client_id,
            client_name: c.client_name,
            client_type: c.client_type,
            is_inactive: c.is_inactive,
            default_currency_code: c.default_currency_code,
            account_manager_id: c.account_manager_id,
            account_manager_name: c.account_manager_name,
            billing_email: c.billing_email,
        }
    }
}

impl From<Page<Client>> for ClientsListResult {
    fn from(p: Page<Client>) -> ClientsListResult {
        ClientsListResult {
            items: p.items.into_iter().map(ClientSummary::from).collect(),
            total_count: p.total_count,
            page: p.page,
            page_size: p.page_size,
        }
    }
}
