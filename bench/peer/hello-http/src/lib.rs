//! The peer of `examples/hello` for `bench/peer/run`: a `wasi:http/proxy`
//! component that `wasmtime serve` runs directly.
//!
//! Every request gets `200`, `content-type: application/json` and the body
//! examples/hello gives for `GET /hello`:
//! `{"message":"Hello, world!","tenant":…,"extension":"com.example.hello","request_id":…}`,
//! with the tenant from `x-alga-tenant` (else `"dev-tenant"`) and the request
//! id from `x-request-id` (else `null`).
#![forbid(unsafe_code)]

use serde_json::json;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

wasip2::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = request.headers();
        let tenant = header(&headers, "x-alga-tenant").unwrap_or_else(|| "dev-tenant".to_owned());
        let request_id = header(&headers, "x-request-id");
        drop(headers);
        drop(request);

        let body = json!({
            "message": "Hello, world!",
            "tenant": tenant,
            "extension": "com.example.hello",
            "request_id": request_id,
        })
        .to_string();

        let fields = Fields::from_list(&[
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("content-length".to_owned(), body.len().to_string().into_bytes()),
        ])
        .expect("valid response headers");
        let response = OutgoingResponse::new(fields);
        response.set_status_code(200).expect("valid status");
        let out_body = response.body().expect("first call to body()");
        ResponseOutparam::set(response_out, Ok(response));

        {
            let stream = out_body.write().expect("first call to write()");
            // One call: the body is far below the 4096-byte limit of a blocking write.
            stream
                .blocking_write_and_flush(body.as_bytes())
                .expect("write response body");
        }
        OutgoingBody::finish(out_body, None).expect("finish response body");
    }
}

/// The first value of header `name`, as text (invalid UTF-8 replaced).
fn header(headers: &Fields, name: &str) -> Option<String> {
    headers
        .get(name)
        .into_iter()
        .next()
        .map(|value| String::from_utf8_lossy(&value).into_owned())
}
