//! `com.example.hello`: the example extension.
//!
//! - `GET /hello` and `GET /hello/:name` (or `?name=`): a JSON greeting naming
//!   the tenant, the extension and the request, plus one info log line;
//! - `POST /echo`: the JSON body, echoed back;
//! - anything else: `404` JSON.
#![forbid(unsafe_code)]

use ext_sdk::{Error, Request, Response, log};
use serde_json::{Value, json};

fn handle(req: Request) -> Result<Response, Error> {
    match req.method() {
        "GET" => {
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
        _ => {}
    }
    Err(Error::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
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
