//! `com.example.hello`: the example extension.
//!
//! - `GET /hello` and `GET /hello/:name` (or `?name=`): a JSON greeting naming
//!   the tenant, the extension and the request, plus one info log line;
//! - `POST /echo`: the JSON body, echoed back;
//! - `GET /visits`: counts visits per tenant in `storage.kv` (namespace
//!   `hello`, key `visits`, with optimistic concurrency: a lost race retries);
//! - `POST /relay` `{"url": "…"}`: `http.fetch` GET of an allowed URL with
//!   the header `x-api-key: {{secret:api-key}}`: the host fills in the
//!   secret, so this code never holds it; answers the upstream's status and
//!   body;
//! - anything else: `404` JSON.
#![forbid(unsafe_code)]

use ext_sdk::{Error, Request, Response, http, kv, log};
use serde_json::{Value, json};

fn handle(req: Request) -> Result<Response, Error> {
    match req.method() {
        "GET" => {
            if req.match_path("/visits").is_some() {
                return visits();
            }
            if let Some(params) = req.match_path("/hello/:name") {
                return Ok(greet(&req, params.get("name").unwrap_or("world")));
            }
            if req.match_path("/hello").is_some() {
                let name = req.query("name").filter(|n| !n.is_empty());
                return Ok(greet(&req, name.as_deref().unwrap_or("world")));
            }
        }
        "POST" if req.match_path("/echo").is_some() => {
            let body: Value = req.json()?;
            return Ok(Response::json(200, &body));
        }
        "POST" if req.match_path("/relay").is_some() => {
            let body: Value = req.json()?;
            let url = body["url"]
                .as_str()
                .ok_or_else(|| Error::bad_request("body must be {\"url\": \"…\"}"))?;
            return relay(url);
        }
        _ => {}
    }
    Err(Error::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Increment the tenant's visit counter; revisions make concurrent visits safe.
fn visits() -> Result<Response, Error> {
    for _ in 0..5 {
        let current = kv::get("hello", "visits").map_err(|e| Error::internal(format!("storage: {}", e.name())))?;
        let (count, revision) = match &current {
            Some(entry) => (entry.json::<u64>().unwrap_or(0), entry.revision),
            // Revision 0: create only if still absent.
            None => (0, Some(0)),
        };
        match kv::put_json("hello", "visits", &(count + 1), revision) {
            Ok(_) => return Ok(Response::json(200, &json!({ "visits": count + 1 }))),
            Err(kv::StorageError::Conflict) => continue,
            Err(e) => return Err(Error::internal(format!("storage: {}", e.name()))),
        }
    }
    Err(Error::internal("storage: too much contention"))
}

/// Fetch `url` with the `api-key` secret as a handle the host fills in.
fn relay(url: &str) -> Result<Response, Error> {
    let request = http::FetchRequest::get(url).header("x-api-key", "{{secret:api-key}}");
    match http::fetch(request) {
        Ok(response) => Ok(Response::json(
            200,
            &json!({ "upstream_status": response.status, "upstream_body": response.text() }),
        )),
        Err(e) => Err(Error::new(502, "fetch_failed", format!("http.fetch: {}", e.name()))),
    }
}

fn greet(req: &Request, name: &str) -> Response {
    let context = req.context();
    log::info(format!("said hello to {name}"));
    Response::json(
        200,
        &json!({
            "message": format!("Hello, {name}!"),
            "tenant": context.tenant_id,
            "extension": context.extension_id,
            "request_id": context.request_id,
        }),
    )
}

ext_sdk::handler!(handle);
