//! `{{name}}`: an ext-runner extension.
//!
//! - `GET /hello` (or `?name=`): a JSON greeting;
//! - `POST /echo`: the JSON body, echoed back;
//! - anything else: `404` JSON.
//!
//! `ext-runner dev .` builds it, serves it and rebuilds on every save; see
//! README.md. Capabilities (`ext_sdk::kv`, `http`, `secrets`, …) need their
//! `cap:…` name in manifest.json's `capabilities`.
#![forbid(unsafe_code)]

use ext_sdk::{Error, Request, Response};
use serde_json::{Value, json};

fn handle(req: Request) -> Result<Response, Error> {
    match req.method() {
        "GET" if req.match_path("/hello").is_some() => {
            let name = req.query("name").filter(|n| !n.is_empty());
            let name = name.as_deref().unwrap_or("world");
            Ok(Response::json(
                200,
                &json!({
                    "message": format!("Hello, {name}!"),
                    "extension": req.context().extension_id,
                }),
            ))
        }
        "POST" if req.match_path("/echo").is_some() => {
            let body: Value = req.json()?;
            Ok(Response::json(200, &body))
        }
        _ => Err(Error::not_found(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        ))),
    }
}

ext_sdk::handler!(handle);

/// Unit tests run natively (`cargo test`): they call `handle` directly.
/// Capability calls (`ext_sdk::log`, `kv`, …) need the runner, so test
/// those through `ext-runner exec` or `ext-runner dev`.
#[cfg(test)]
mod tests {
    use super::*;
    use ext_sdk::Context;

    fn request(method: &str, url: &str) -> Request {
        let context = Context {
            request_id: Some("req-1".to_owned()),
            tenant_id: "tenant-1".to_owned(),
            extension_id: "{{name}}".to_owned(),
            install_id: None,
            version_id: None,
        };
        Request::new(context, method, url)
    }

    fn json_body(response: &Response) -> Value {
        serde_json::from_slice(response.body_bytes()).expect("a JSON body")
    }

    #[test]
    fn hello_greets_by_name_or_the_world() {
        let response = handle(request("GET", "/hello?name=Ada")).unwrap();
        assert_eq!(response.status_code(), 200);
        assert_eq!(
            json_body(&response),
            json!({"message": "Hello, Ada!", "extension": "{{name}}"})
        );
        let response = handle(request("GET", "/hello")).unwrap();
        assert_eq!(json_body(&response)["message"], "Hello, world!");
    }

    #[test]
    fn echo_returns_the_json_body_and_refuses_other_bodies() {
        let response = handle(request("POST", "/echo").with_body(r#"{"a":[1,2]}"#)).unwrap();
        assert_eq!(json_body(&response), json!({"a": [1, 2]}));
        let error = handle(request("POST", "/echo").with_body("{")).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn unknown_routes_are_404() {
        let error = handle(request("DELETE", "/hello")).unwrap_err();
        assert_eq!(error.status(), 404);
    }
}
