//! The product interfaces (`scheduler`, `invoicing`, `clients`,
//! `services`) through the `product_probe` guest against a loopback host
//! API: each call is `POST /api/internal/ext-<svc>/install/<install id>`
//! with `x-runner-auth` and the request's ids, its body `{operation, …}` in
//! camelCase, and the host's answers (records, statuses, oversized or
//! missing answers) mapped to the WIT's results. Without the grant, a host
//! API or an install id every call is its typed denial and nothing reaches
//! the host; refused paging and payloads never do either.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const HOST_TOKEN: &str = "host-api-token-0123456789";
const INSTALL: &str = "inst-1";
const ALL: &[&str] = &[
    "cap:scheduler.manage",
    "cap:invoice.manual.create",
    "cap:client.read",
    "cap:service.read",
];
const MAX: usize = ext_runner::limits::MAX_HOST_API_RESPONSE_BYTES;

/// What the mock answers next (to every call until changed).
#[derive(Clone)]
enum Answer {
    Json(u16, String),
    /// 307 to another host API path (must not be followed).
    Redirect,
    /// `n` bytes of spaces in 64 KiB chunks, without a content length.
    Streamed(usize),
    /// Never answers.
    Hang,
}

/// One call the mock received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// A loopback host API: checks the token (401 otherwise), records every
/// call and answers what it was told.
struct HostApi {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
}

impl HostApi {
    async fn start() -> HostApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Answer::Json(200, "null".into())));
        let app = {
            let (seen, answer) = (seen.clone(), answer.clone());
            axum::Router::new().fallback(move |uri: http::Uri, headers: HeaderMap, body: bytes::Bytes| {
                let (seen, answer) = (seen.clone(), answer.clone());
                async move {
                    let authorised = headers.get("x-runner-auth").is_some_and(|v| v == HOST_TOKEN);
                    seen.lock().unwrap().push(Seen {
                        path: uri.to_string(),
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    if !authorised {
                        return http::Response::builder().status(401).body(Body::empty()).unwrap();
                    }
                    let answer = answer.lock().unwrap().clone();
                    match answer {
                        Answer::Json(status, text) => http::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Body::from(text))
                            .unwrap(),
                        Answer::Redirect => http::Response::builder()
                            .status(307)
                            .header(
                                "location",
                                format!("/api/internal/ext-clients/install/{INSTALL}?redirected"),
                            )
                            .body(Body::empty())
                            .unwrap(),
                        Answer::Streamed(n) => {
                            let chunks = (0..n.div_ceil(65_536)).map(move |i| {
                                let len = 65_536.min(n - i * 65_536);
                                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; len]))
                            });
                            http::Response::builder()
                                .status(200)
                                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                                .unwrap()
                        }
                        Answer::Hang => std::future::pending().await,
                    }
                }
            })
        };
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HostApi {
            url: format!("http://{addr}"),
            seen,
            answer,
        }
    }

    fn answer(&self, status: u16, body: Value) {
        self.answer_raw(Answer::Json(status, body.to_string()));
    }

    fn answer_raw(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// The calls received since the last `take`.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// The one call received since the last `take`: its path and body.
    fn one(&self) -> (String, Value) {
        let seen = self.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        (seen[0].path.clone(), seen[0].body.clone())
    }

    fn runner(&self) -> TestRunner {
        TestRunner::with_env(&[
            ("RUNNER_HOST_API_URL", &self.url),
            ("RUNNER_HOST_API_TOKEN", HOST_TOKEN),
        ])
    }
}

fn path(svc: &str) -> String {
    format!("/api/internal/ext-{svc}/install/{INSTALL}")
}

/// The probe's envelope for `call(args)`: install `inst-1`, a user.
fn probe_envelope(digest: &ext_bundle::Digest, call: &str, args: Value) -> Value {
    let mut env = envelope(digest, "POST", "/");
    env["context"]["install_id"] = json!(INSTALL);
    env["user"] = json!({"user_id": "u-1", "user_type": "internal", "user_name": "Ann", "client_name": "Acme"});
    env["http"]["body_b64"] = json!(b64(json!({"call": call, "args": args}).to_string().as_bytes()));
    env
}

/// The guest's answer and the execution's report.
async fn run(t: &TestRunner, env: &Value) -> (Value, Value) {
    let (status, _, body) = t.post(env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (guest_json(&body), body["report"].clone())
}

async fn call(t: &TestRunner, digest: &ext_bundle::Digest, name: &str, args: Value) -> Value {
    run(t, &probe_envelope(digest, name, args)).await.0
}

fn probe(t: &TestRunner, capabilities: &[&str]) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("product_probe")).unwrap();
    t.publish_dir(bundle_dir_with("product_probe", &wasm, capabilities).path())
}

#[tokio::test]
async fn clients_calls_are_forwarded_and_answers_mapped() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);

    host.answer(
        200,
        json!({"items": [
            {"clientId": "c-1", "clientName": "Acme", "clientType": "company", "isInactive": false,
             "defaultCurrencyCode": "EUR", "accountManagerId": "u-9", "accountManagerName": "Bo",
             "billingEmail": "billing@acme.test", "notInTheWit": 1},
            {"clientId": "c-2", "clientName": "Bolt", "isInactive": true}
        ], "totalCount": 42, "page": 2, "pageSize": 10}),
    );
    let env = probe_envelope(
        &digest,
        "clients.list",
        json!({"search": "ac", "include_inactive": true, "page": 2, "page_size": 10}),
    );
    let (out, report) = run(&t, &env).await;
    assert_eq!(
        out,
        json!({"ok": {"items": [
            {"client_id": "c-1", "client_name": "Acme", "client_type": "company", "is_inactive": false,
             "default_currency_code": "EUR", "account_manager_id": "u-9", "account_manager_name": "Bo",
             "billing_email": "billing@acme.test"},
            {"client_id": "c-2", "client_name": "Bolt", "client_type": null, "is_inactive": true,
             "default_currency_code": null, "account_manager_id": null, "account_manager_name": null,
             "billing_email": null}
        ], "total_count": 42, "page": 2, "page_size": 10}})
    );
    assert_eq!(report["host_calls"]["clients"], 1, "{report}");
    let seen = host.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, path("clients"));
    assert_eq!(
        seen[0].body,
        json!({"operation": "list",
               "input": {"search": "ac", "includeInactive": true, "page": 2, "pageSize": 10},
               "user": {"userId": "u-1", "userType": "internal"}})
    );
    let header = |name: &str| seen[0].headers.get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(header("x-runner-auth"), HOST_TOKEN);
    assert_eq!(header("x-request-id"), env["context"]["request_id"].as_str().unwrap());
    assert_eq!(header("x-alga-tenant"), "tenant-a");
    assert_eq!(header("x-alga-extension"), "com.test.ext");
    assert_eq!(header("content-type"), "application/json");

    // Defaults: page 1 of 25, no filters sent.
    host.answer(200, json!({"items": [], "totalCount": 0, "page": 1, "pageSize": 25}));
    assert_eq!(
        call(&t, &digest, "clients.list", json!({})).await,
        json!({"ok": {"items": [], "total_count": 0, "page": 1, "page_size": 25}})
    );
    assert_eq!(host.one().1["input"], json!({"page": 1, "pageSize": 25}));

    host.answer(
        200,
        json!({"clientId": "c-2", "clientName": "Bolt", "isInactive": true}),
    );
    assert_eq!(
        call(&t, &digest, "clients.get", json!({"id": "c-2"})).await["ok"]["client_name"],
        "Bolt"
    );
    assert_eq!(
        host.one(),
        (
            path("clients"),
            json!({"operation": "get", "clientId": "c-2", "user": {"userId": "u-1", "userType": "internal"}})
        )
    );
    host.answer(200, Value::Null);
    assert_eq!(
        call(&t, &digest, "clients.get", json!({"id": "c-3"})).await,
        json!({"ok": null})
    );
    host.answer(404, json!({"message": "no such client"}));
    assert_eq!(
        call(&t, &digest, "clients.get", json!({"id": "c-3"})).await,
        json!({"ok": null})
    );
    host.take();

    // Without a user in the request, `user` is null.
    host.answer(200, Value::Null);
    let mut env = probe_envelope(&digest, "clients.get", json!({"id": "c-3"}));
    env.as_object_mut().unwrap().remove("user");
    run(&t, &env).await;
    assert_eq!(host.one().1["user"], Value::Null);
}

#[tokio::test]
async fn services_calls_are_forwarded_and_answers_mapped() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);
    let support = json!({"serviceId": "s-1", "serviceName": "Support", "itemKind": "service",
                         "billingMethod": "hourly", "serviceTypeId": "t-1", "serviceTypeName": "Labour",
                         "defaultRate": 120.5, "unitOfMeasure": "hour", "isActive": true, "sku": "SUP-1"});
    let support_out = json!({"service_id": "s-1", "service_name": "Support", "item_kind": "service",
                             "billing_method": "hourly", "service_type_id": "t-1", "service_type_name": "Labour",
                             "default_rate": 120.5, "unit_of_measure": "hour", "is_active": true, "sku": "SUP-1"});

    host.answer(
        200,
        json!({"items": [support, {"serviceId": "s-2", "serviceName": "Cable", "itemKind": "product",
                                   "billingMethod": "usage", "defaultRate": 3.0, "unitOfMeasure": "m",
                                   "isActive": false}],
               "totalCount": 2, "page": 1, "pageSize": 100}),
    );
    let out = call(
        &t,
        &digest,
        "services.list",
        json!({"search": "su", "item_kind": "product", "is_active": false, "billing_method": "usage", "page_size": 100}),
    )
    .await;
    assert_eq!(
        out,
        json!({"ok": {"items": [support_out, {"service_id": "s-2", "service_name": "Cable", "item_kind": "product",
                                              "billing_method": "usage", "service_type_id": null,
                                              "service_type_name": null, "default_rate": 3.0,
                                              "unit_of_measure": "m", "is_active": false, "sku": null}],
                      "total_count": 2, "page": 1, "page_size": 100}})
    );
    assert_eq!(
        host.one(),
        (
            path("services"),
            json!({"operation": "list",
                   "input": {"search": "su", "itemKind": "product", "isActive": false, "billingMethod": "usage",
                             "page": 1, "pageSize": 100},
                   "user": {"userId": "u-1", "userType": "internal"}})
        )
    );

    host.answer(200, support.clone());
    assert_eq!(
        call(&t, &digest, "services.get", json!({"id": "s-1"})).await,
        json!({"ok": support_out})
    );
    assert_eq!(
        host.one(),
        (
            path("services"),
            json!({"operation": "get", "serviceId": "s-1", "user": {"userId": "u-1", "userType": "internal"}})
        )
    );
    host.answer(404, Value::Null);
    assert_eq!(
        call(&t, &digest, "services.get", json!({"id": "s-9"})).await,
        json!({"ok": null})
    );
    // A case the WIT does not have is a bad body.
    let mut gadget = support.clone();
    gadget["itemKind"] = json!("gadget");
    host.answer(200, gadget);
    assert_eq!(
        call(&t, &digest, "services.get", json!({"id": "s-1"})).await,
        json!({"error": "internal"})
    );
}

#[tokio::test]
async fn invoicing_is_forwarded_and_failures_are_results() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);
    let args = json!({"client_id": "c-1", "invoice_date": "2026-05-01", "due_date": "2026-05-31", "po_number": "PO-7",
    "items": [
        {"service_id": "s-1", "quantity": 2, "description": "Support", "rate": 120.5},
        {"service_id": "s-1", "quantity": 1, "description": "Loyalty", "rate": 10,
         "is_discount": true, "discount_type": "percentage",
         "applies_to_item_id": "line-1", "applies_to_service_id": "s-1"}
    ]});

    host.answer(
        200,
        json!({"success": true, "invoiceId": "inv-1", "invoiceNumber": "INV-0001", "status": "draft",
               "subtotal": 251.0, "tax": 25.1, "total": 276.1}),
    );
    assert_eq!(
        call(&t, &digest, "invoicing.create", args.clone()).await,
        json!({"ok": {"success": true, "invoice_id": "inv-1", "invoice_number": "INV-0001", "status": "draft",
                      "subtotal": 251.0, "tax": 25.1, "total": 276.1, "error": null, "field_errors": null}})
    );
    assert_eq!(
        host.one(),
        (
            path("invoicing"),
            json!({"operation": "createManualInvoice", "clientId": "c-1", "invoiceDate": "2026-05-01",
            "dueDate": "2026-05-31", "poNumber": "PO-7",
            "items": [
                {"serviceId": "s-1", "quantity": 2.0, "description": "Support", "rate": 120.5},
                {"serviceId": "s-1", "quantity": 1.0, "description": "Loyalty", "rate": 10.0,
                 "isDiscount": true, "discountType": "percentage",
                 "appliesToItemId": "line-1", "appliesToServiceId": "s-1"}
            ]})
        )
    );

    // A 400 answering the result record keeps its error and field errors.
    host.answer(
        400,
        json!({"success": false, "error": "unknown client", "fieldErrors": {"clientId": "not found"}}),
    );
    assert_eq!(
        call(&t, &digest, "invoicing.create", args.clone()).await,
        json!({"ok": {"success": false, "invoice_id": null, "invoice_number": null, "status": null,
                      "subtotal": null, "tax": null, "total": null, "error": "unknown client",
                      "field_errors": "{\"clientId\":\"not found\"}"}})
    );
    host.take();

    // A number JSON cannot carry is refused before any call.
    let mut nan = args.clone();
    nan["items"][1]["rate"] = json!("NaN");
    assert_eq!(
        call(&t, &digest, "invoicing.create", nan).await,
        json!({"ok": {"success": false, "invoice_id": null, "invoice_number": null, "status": null,
                      "subtotal": null, "tax": null, "total": null, "error": "validation-failed",
                      "field_errors": "{\"items[1].rate\":\"must be a finite number\"}"}})
    );
    assert!(host.take().is_empty());
}

#[tokio::test]
async fn scheduler_calls_are_forwarded_and_answers_mapped() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);

    host.answer(
        200,
        json!([{"id": "sch-1", "endpointPath": "/sync", "endpointMethod": "POST", "name": "nightly",
                "cron": "0 2 * * *", "timezone": "Europe/Paris", "enabled": true, "payload": {"full": true},
                "lastRunAt": "2026-05-01T02:00:00Z", "lastRunStatus": "ok", "lastError": null,
                "createdAt": "2026-04-01T00:00:00Z"}]),
    );
    let schedule = json!({"id": "sch-1", "endpoint_path": "/sync", "endpoint_method": "POST", "name": "nightly",
                          "cron": "0 2 * * *", "timezone": "Europe/Paris", "enabled": true,
                          "payload": "{\"full\":true}", "last_run_at": "2026-05-01T02:00:00Z",
                          "last_run_status": "ok", "last_error": null, "created_at": "2026-04-01T00:00:00Z"});
    assert_eq!(
        call(&t, &digest, "scheduler.list", json!({})).await,
        json!({"ok": [schedule]})
    );
    assert_eq!(host.one(), (path("scheduler"), json!({"operation": "list"})));

    host.answer(
        200,
        json!({"id": "sch-1", "endpointPath": "/sync", "endpointMethod": "POST", "cron": "0 2 * * *",
               "timezone": "UTC", "enabled": false}),
    );
    assert_eq!(
        call(&t, &digest, "scheduler.get", json!({"id": "sch-1"})).await,
        json!({"ok": {"id": "sch-1", "endpoint_path": "/sync", "endpoint_method": "POST", "name": null,
                      "cron": "0 2 * * *", "timezone": "UTC", "enabled": false, "payload": null,
                      "last_run_at": null, "last_run_status": null, "last_error": null, "created_at": null}})
    );
    assert_eq!(
        host.one(),
        (path("scheduler"), json!({"operation": "get", "scheduleId": "sch-1"}))
    );
    for (status, body) in [(200, Value::Null), (404, json!({"error": "gone"}))] {
        host.answer(status, body);
        assert_eq!(
            call(&t, &digest, "scheduler.get", json!({"id": "sch-9"})).await,
            json!({"ok": null})
        );
    }
    host.take();

    host.answer(200, json!({"success": true, "scheduleId": "sch-2"}));
    let created = call(
        &t,
        &digest,
        "scheduler.create",
        json!({"endpoint": "POST /sync", "cron": "0 2 * * *", "timezone": "Europe/Paris", "enabled": true,
               "name": "nightly", "payload": "{\"full\":true}"}),
    )
    .await;
    assert_eq!(
        created,
        json!({"ok": {"success": true, "schedule_id": "sch-2", "error": null, "field_errors": null}})
    );
    assert_eq!(
        host.one(),
        (
            path("scheduler"),
            json!({"operation": "create", "endpoint": "POST /sync", "cron": "0 2 * * *",
                   "timezone": "Europe/Paris", "enabled": true, "name": "nightly", "payload": {"full": true}})
        )
    );
    // The host's own validation answer passes through.
    host.answer(
        200,
        json!({"success": false, "error": "endpoint is not schedulable", "fieldErrors": {"endpoint": "not schedulable"}}),
    );
    assert_eq!(
        call(
            &t,
            &digest,
            "scheduler.create",
            json!({"endpoint": "/x", "cron": "* * * * *"})
        )
        .await,
        json!({"ok": {"success": false, "schedule_id": null, "error": "endpoint is not schedulable",
                      "field_errors": "{\"endpoint\":\"not schedulable\"}"}})
    );
    assert_eq!(
        host.one().1,
        json!({"operation": "create", "endpoint": "/x", "cron": "* * * * *"})
    );

    host.answer(200, json!({"success": true}));
    assert_eq!(
        call(
            &t,
            &digest,
            "scheduler.update",
            json!({"id": "sch-1", "cron": "*/5 * * * *", "payload": ""})
        )
        .await,
        json!({"ok": {"success": true, "error": null, "field_errors": null}})
    );
    assert_eq!(
        host.one(),
        (
            path("scheduler"),
            json!({"operation": "update", "scheduleId": "sch-1", "cron": "*/5 * * * *", "payload": null})
        )
    );
    assert_eq!(
        call(
            &t,
            &digest,
            "scheduler.update",
            json!({"id": "sch-1", "enabled": false, "payload": "[1,2]"})
        )
        .await,
        json!({"ok": {"success": true, "error": null, "field_errors": null}})
    );
    assert_eq!(
        host.one().1,
        json!({"operation": "update", "scheduleId": "sch-1", "enabled": false, "payload": [1, 2]})
    );

    assert_eq!(
        call(&t, &digest, "scheduler.delete", json!({"id": "sch-1"})).await,
        json!({"ok": {"success": true, "error": null}})
    );
    assert_eq!(
        host.one(),
        (path("scheduler"), json!({"operation": "delete", "scheduleId": "sch-1"}))
    );

    host.answer(
        200,
        json!([{"id": "ep-1", "method": "POST", "path": "/sync", "handler": "dist/main", "schedulable": true},
               {"id": "ep-2", "method": "GET", "path": "/status", "handler": "dist/main", "schedulable": false}]),
    );
    assert_eq!(
        call(&t, &digest, "scheduler.endpoints", json!({})).await,
        json!({"ok": [{"id": "ep-1", "method": "POST", "path": "/sync", "handler": "dist/main", "schedulable": true},
                      {"id": "ep-2", "method": "GET", "path": "/status", "handler": "dist/main",
                       "schedulable": false}]})
    );
    assert_eq!(host.one(), (path("scheduler"), json!({"operation": "getEndpoints"})));
}

/// A payload that is not JSON is refused without a call, on create and update.
#[tokio::test]
async fn scheduler_payload_must_be_json() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);
    host.answer(200, json!({"success": true, "scheduleId": "never"}));
    let refused = json!({"success": false, "error": "validation-failed",
                         "field_errors": "{\"payload\":\"not valid JSON\"}"});
    let mut create_refused = refused.clone();
    create_refused["schedule_id"] = Value::Null;
    for payload in ["{oops", "", "{\"a\":1} trailing"] {
        assert_eq!(
            call(
                &t,
                &digest,
                "scheduler.create",
                json!({"endpoint": "/sync", "cron": "0 2 * * *", "payload": payload})
            )
            .await,
            json!({"ok": create_refused}),
            "{payload:?}"
        );
    }
    assert_eq!(
        call(
            &t,
            &digest,
            "scheduler.update",
            json!({"id": "sch-1", "payload": "not json"})
        )
        .await,
        json!({"ok": refused})
    );
    assert!(host.take().is_empty());
}

/// Each status of the host API, a redirect and a malformed body, as every
/// interface's guest sees them.
#[tokio::test]
async fn host_statuses_map_to_typed_errors() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);
    let result_error = |out: Value| out["ok"]["error"].clone();
    let error = |out: Value| out["error"].clone();

    // (status, clients and services, scheduler, result records)
    let table = [
        (400, "invalid-input", "validation-failed", "validation-failed"),
        (401, "not-allowed", "denied", "denied"),
        (403, "not-allowed", "denied", "denied"),
        (404, "internal", "not-found", "not-found"),
        (429, "internal", "quota-exceeded", "quota-exceeded"),
        (409, "internal", "internal", "internal"),
        (500, "internal", "internal", "internal"),
        (503, "internal", "internal", "internal"),
    ];
    for (status, read, scheduler, record) in table {
        host.answer(status, json!({"message": "refused"}));
        let at = format!("status {status}");
        assert_eq!(error(call(&t, &digest, "clients.list", json!({})).await), read, "{at}");
        assert_eq!(error(call(&t, &digest, "services.list", json!({})).await), read, "{at}");
        assert_eq!(
            error(call(&t, &digest, "scheduler.list", json!({})).await),
            scheduler,
            "{at}"
        );
        assert_eq!(
            error(call(&t, &digest, "scheduler.endpoints", json!({})).await),
            scheduler,
            "{at}"
        );
        if status != 404 {
            assert_eq!(
                error(call(&t, &digest, "clients.get", json!({"id": "c"})).await),
                read,
                "{at}"
            );
            assert_eq!(
                error(call(&t, &digest, "services.get", json!({"id": "s"})).await),
                read,
                "{at}"
            );
            assert_eq!(
                error(call(&t, &digest, "scheduler.get", json!({"id": "x"})).await),
                scheduler,
                "{at}"
            );
        }
        let create = json!({"endpoint": "/sync", "cron": "0 2 * * *"});
        assert_eq!(
            result_error(call(&t, &digest, "scheduler.create", create).await),
            record,
            "{at}"
        );
        assert_eq!(
            result_error(call(&t, &digest, "scheduler.update", json!({"id": "x"})).await),
            record,
            "{at}"
        );
        assert_eq!(
            result_error(call(&t, &digest, "scheduler.delete", json!({"id": "x"})).await),
            record,
            "{at}"
        );
        let invoice = json!({"client_id": "c", "items": []});
        assert_eq!(
            result_error(call(&t, &digest, "invoicing.create", invoice).await),
            record,
            "{at}"
        );
        let calls = if status == 404 { 8 } else { 11 };
        assert_eq!(host.take().len(), calls, "{at}");
    }

    // Redirects are not followed: one call, `internal`.
    host.answer_raw(Answer::Redirect);
    assert_eq!(
        call(&t, &digest, "clients.list", json!({})).await,
        json!({"error": "internal"})
    );
    let seen = host.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, path("clients"));

    // A 2xx body that is not what the operation answers.
    for body in ["not json", "{\"items\": []}", "[{\"id\": 1}]"] {
        host.answer_raw(Answer::Json(200, body.into()));
        assert_eq!(
            call(&t, &digest, "clients.list", json!({})).await,
            json!({"error": "internal"}),
            "{body}"
        );
        assert_eq!(
            call(&t, &digest, "scheduler.list", json!({})).await,
            json!({"error": "internal"}),
            "{body}"
        );
        assert_eq!(
            result_error(call(&t, &digest, "scheduler.delete", json!({"id": "x"})).await),
            "internal",
            "{body}"
        );
    }
    host.take();

    // A runner with another token is refused by the host: its 401 is a denial.
    let wrong = TestRunner::with_env(&[("RUNNER_HOST_API_URL", &host.url), ("RUNNER_HOST_API_TOKEN", "wrong")]);
    let digest = probe(&wrong, ALL);
    host.answer(200, json!({"items": [], "totalCount": 0, "page": 1, "pageSize": 25}));
    assert_eq!(
        call(&wrong, &digest, "clients.list", json!({})).await,
        json!({"error": "not-allowed"})
    );
    assert_eq!(host.take()[0].headers["x-runner-auth"], "wrong");
}

/// Every function of the four interfaces, as the guest sees it when the
/// call cannot be made.
async fn assert_all_denied(t: &TestRunner, env_for: impl Fn(&str, Value) -> Value) {
    let cases = [
        ("clients.list", json!({}), json!({"error": "not-allowed"})),
        ("clients.get", json!({"id": "c"}), json!({"error": "not-allowed"})),
        ("services.list", json!({}), json!({"error": "not-allowed"})),
        ("services.get", json!({"id": "s"}), json!({"error": "not-allowed"})),
        ("scheduler.list", json!({}), json!({"error": "denied"})),
        ("scheduler.get", json!({"id": "x"}), json!({"error": "denied"})),
        ("scheduler.endpoints", json!({}), json!({"error": "denied"})),
        (
            "scheduler.create",
            json!({"endpoint": "/sync", "cron": "0 2 * * *"}),
            json!({"ok": {"success": false, "schedule_id": null, "error": "denied", "field_errors": null}}),
        ),
        (
            "scheduler.update",
            json!({"id": "x"}),
            json!({"ok": {"success": false, "error": "denied", "field_errors": null}}),
        ),
        (
            "scheduler.delete",
            json!({"id": "x"}),
            json!({"ok": {"success": false, "error": "denied"}}),
        ),
        (
            "invoicing.create",
            json!({"client_id": "c", "items": []}),
            json!({"ok": {"success": false, "invoice_id": null, "invoice_number": null, "status": null,
                          "subtotal": null, "tax": null, "total": null, "error": "denied", "field_errors": null}}),
        ),
    ];
    for (name, args, want) in cases {
        assert_eq!(run(t, &env_for(name, args)).await.0, want, "{name}");
    }
}

/// Deny by default: without the grant (undeclared, or not installed),
/// without a host API and without an install id, every call is its typed
/// denial and nothing reaches the host.
#[tokio::test]
async fn calls_are_denied_without_grant_host_api_or_install() {
    let host = HostApi::start().await;
    host.answer(200, json!({"success": true}));
    let t = host.runner();

    let undeclared = probe(&t, &["cap:log.emit"]);
    assert_all_denied(&t, |name, args| probe_envelope(&undeclared, name, args)).await;

    let declared = probe(&t, ALL);
    assert_all_denied(&t, |name, args| {
        let mut env = probe_envelope(&declared, name, args);
        env["providers"] = json!(["cap:log.emit"]);
        env
    })
    .await;

    assert_all_denied(&t, |name, args| {
        let mut env = probe_envelope(&declared, name, args);
        env["context"].as_object_mut().unwrap().remove("install_id");
        env
    })
    .await;
    assert!(host.take().is_empty());

    let unconfigured = TestRunner::new();
    let digest = probe(&unconfigured, ALL);
    assert_all_denied(&unconfigured, |name, args| probe_envelope(&digest, name, args)).await;
    assert!(host.take().is_empty());
}

/// Paging outside `page ≥ 1`, `1 ≤ page-size ≤ 100` is `invalid-input`
/// before any call; the bounds themselves are called.
#[tokio::test]
async fn paging_limits_are_checked_before_any_call() {
    let host = HostApi::start().await;
    host.answer(200, json!({"items": [], "totalCount": 0, "page": 1, "pageSize": 100}));
    let t = host.runner();
    let digest = probe(&t, ALL);
    for name in ["clients.list", "services.list"] {
        for args in [json!({"page": 0}), json!({"page_size": 0}), json!({"page_size": 101})] {
            assert_eq!(
                call(&t, &digest, name, args.clone()).await,
                json!({"error": "invalid-input"}),
                "{name} {args}"
            );
        }
        assert!(host.take().is_empty(), "{name}");
        for args in [json!({"page": 1, "page_size": 1}), json!({"page_size": 100})] {
            assert!(
                call(&t, &digest, name, args.clone()).await["ok"].is_object(),
                "{name} {args}"
            );
        }
        assert_eq!(host.take().len(), 2, "{name}");
    }
}

/// Answers are read up to the cap: exactly the cap is read, one byte more
/// is `internal`, with a content length or streamed without one.
#[tokio::test]
async fn oversized_answers_are_internal() {
    let host = HostApi::start().await;
    let t = host.runner();
    let digest = probe(&t, ALL);
    let page = r#"{"items": [], "totalCount": 0, "page": 1, "pageSize": 25}"#;
    let padded = |len: usize| format!("{page}{}", " ".repeat(len - page.len()));

    host.answer_raw(Answer::Json(200, padded(MAX)));
    assert!(call(&t, &digest, "clients.list", json!({})).await["ok"].is_object());
    host.answer_raw(Answer::Json(200, padded(MAX + 1)));
    assert_eq!(
        call(&t, &digest, "clients.list", json!({})).await,
        json!({"error": "internal"})
    );
    host.answer_raw(Answer::Streamed(MAX + 1));
    assert_eq!(
        call(&t, &digest, "clients.list", json!({})).await,
        json!({"error": "internal"})
    );
    assert_eq!(host.take().len(), 3);
}

/// A-02: a host API that never answers ends the call with `internal`
/// before the execution's deadline, and the guest still answers.
#[tokio::test]
async fn a02_hanging_host_api_is_internal_within_the_deadline() {
    let host = HostApi::start().await;
    host.answer_raw(Answer::Hang);
    let t = host.runner();
    let digest = probe(&t, ALL);
    // Compiled before the clock starts (a refused page makes no call).
    assert_eq!(
        call(&t, &digest, "clients.list", json!({"page": 0})).await,
        json!({"error": "invalid-input"})
    );
    for (name, args, want) in [
        ("clients.list", json!({}), json!({"error": "internal"})),
        (
            "scheduler.delete",
            json!({"id": "x"}),
            json!({"ok": {"success": false, "error": "internal"}}),
        ),
    ] {
        let mut env = probe_envelope(&digest, name, args);
        env["limits"] = json!({"timeout_ms": 1000});
        let started = Instant::now();
        let (out, _) = run(&t, &env).await;
        let took = started.elapsed();
        assert_eq!(out, want, "{name}");
        assert!(took < Duration::from_millis(1000), "{name}: {took:?}");
        assert!(took >= Duration::from_millis(700), "{name}: {took:?}");
    }
    assert_eq!(host.take().len(), 2);
}

/// The example's manifest around the probe: the probe at `POST /`, one
/// schedulable endpoint, one that is not, and a path two schedulable
/// endpoints share.
fn scheduling_archive() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hello_dir(), dir.path());
    let wasm = std::fs::read(ext_test_fixtures::component("product_probe")).unwrap();
    std::fs::write(dir.path().join("dist/main.wasm"), wasm).unwrap();
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["capabilities"] = json!(["cap:context.read", "cap:log.emit", "cap:scheduler.manage"]);
    manifest["api"]["endpoints"] = json!([
        {"method": "POST", "path": "/", "handler": "dist/main"},
        {"method": "POST", "path": "/sync", "handler": "dist/main", "schedulable": true},
        {"method": "GET", "path": "/report", "handler": "dist/main"},
        {"method": "POST", "path": "/twice", "handler": "dist/main", "schedulable": true},
        {"method": "PUT", "path": "/twice", "handler": "dist/main", "schedulable": true},
    ]);
    std::fs::write(&path, manifest.to_string()).unwrap();
    ext_bundle::pack_dir(dir.path()).unwrap()
}

/// With the registry role in the process, `scheduler` keeps the install's
/// schedules in the registry (no host API configured): endpoints from the
/// manifest, `schedulable` required, the registry's field errors, another
/// tenant's install sees none of them, and they go with an uninstall.
#[tokio::test]
async fn scheduler_keeps_schedules_in_the_registry_running_here() {
    use crate::registry::{ADMIN, Backend, HELLO, PUBLISHER, System};

    let system = System::start(Backend::Sqlite, &[]).await;
    let (status, body) = system.publish(PUBLISHER, &scheduling_archive()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut installs = Vec::new();
    for tenant in ["tenant-a", "tenant-b"] {
        let (status, install) = system.install(ADMIN, tenant, &json!({"version": "1.0.0"})).await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        installs.push(install);
    }
    let call = |install: &Value, name: &str, args: Value| {
        let digest = ext_bundle::Digest::parse(install["content_hash"].as_str().unwrap()).unwrap();
        let mut env = probe_envelope(&digest, name, args);
        env["context"]["tenant_id"] = install["tenant"].clone();
        env["context"]["extension_id"] = json!(HELLO);
        env["context"]["install_id"] = install["install_id"].clone();
        env["providers"] = json!(["cap:scheduler.manage"]);
        let system = &system;
        async move { run(&system.test, &env).await.0 }
    };
    let (a, b) = (&installs[0], &installs[1]);

    let endpoints = call(a, "scheduler.endpoints", json!({})).await;
    assert_eq!(
        endpoints["ok"][1],
        json!({"id": "POST /sync", "method": "POST", "path": "/sync", "handler": "dist/main", "schedulable": true})
    );
    assert_eq!(endpoints["ok"][2]["schedulable"], false);
    assert_eq!(endpoints["ok"].as_array().unwrap().len(), 5);

    let created = call(
        a,
        "scheduler.create",
        json!({"endpoint": "POST /sync", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "name": "nightly", "payload": "{\"full\":true}"}),
    )
    .await;
    assert_eq!(created["ok"]["success"], true, "{created}");
    let id = created["ok"]["schedule_id"].as_str().unwrap().to_string();

    let listed = call(a, "scheduler.list", json!({})).await;
    let schedule = &listed["ok"][0];
    assert_eq!(listed["ok"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (
            schedule["id"].as_str(),
            schedule["endpoint_method"].as_str(),
            schedule["endpoint_path"].as_str()
        ),
        (Some(id.as_str()), Some("POST"), Some("/sync"))
    );
    assert_eq!(
        (schedule["cron"].as_str(), schedule["timezone"].as_str()),
        (Some("0 3 * * *"), Some("Europe/Berlin"))
    );
    assert_eq!(
        (schedule["enabled"].as_bool(), schedule["payload"].as_str()),
        (Some(true), Some("{\"full\":true}"))
    );
    assert_eq!(schedule["last_run_at"], Value::Null);
    assert!(schedule["created_at"].as_str().unwrap().ends_with('Z'), "{schedule}");
    assert_eq!(call(a, "scheduler.get", json!({"id": id})).await["ok"], *schedule);

    // A path alone names the one schedulable endpoint at it.
    let by_path = call(
        a,
        "scheduler.create",
        json!({"endpoint": "/sync", "cron": "*/15 * * * *"}),
    )
    .await;
    assert_eq!(by_path["ok"]["success"], true, "{by_path}");

    // Refusals: success false, validation-failed, the fields named.
    let refused = |endpoint: &'static str, cron: &'static str| {
        let call = &call;
        async move {
            let out = call(a, "scheduler.create", json!({"endpoint": endpoint, "cron": cron})).await;
            assert_eq!(out["ok"]["success"], false, "{out}");
            assert_eq!(out["ok"]["error"], "validation-failed", "{out}");
            serde_json::from_str::<Value>(out["ok"]["field_errors"].as_str().unwrap()).unwrap()
        }
    };
    let fields = refused("GET /report", "0 3 * * *").await;
    assert_eq!(
        fields,
        json!({"endpoint": "`GET /report` is not marked schedulable in the manifest"})
    );
    assert!(
        refused("POST /nowhere", "0 3 * * *").await["endpoint"]
            .as_str()
            .unwrap()
            .contains("not an endpoint")
    );
    assert!(
        refused("/twice", "0 3 * * *").await["endpoint"]
            .as_str()
            .unwrap()
            .contains("several")
    );
    let fields = refused("POST /sync", "0 3 * *").await;
    assert_eq!(fields.as_object().unwrap().keys().collect::<Vec<_>>(), ["cron"]);
    let bad_zone = call(
        a,
        "scheduler.create",
        json!({"endpoint": "POST /sync", "cron": "0 3 * * *", "timezone": "Mars/Base"}),
    )
    .await;
    assert!(
        bad_zone["ok"]["field_errors"].as_str().unwrap().contains("timezone"),
        "{bad_zone}"
    );

    // Update: disable, then clear the payload; unknown ids are not-found.
    let off = call(
        a,
        "scheduler.update",
        json!({"id": id, "enabled": false, "payload": ""}),
    )
    .await;
    assert_eq!(off["ok"], json!({"success": true, "error": null, "field_errors": null}));
    let now = call(a, "scheduler.get", json!({"id": id})).await;
    assert_eq!(
        (now["ok"]["enabled"].as_bool(), &now["ok"]["payload"]),
        (Some(false), &Value::Null)
    );
    let missing = call(a, "scheduler.update", json!({"id": "no-such", "cron": "0 4 * * *"})).await;
    assert_eq!(missing["ok"]["error"], "not-found", "{missing}");

    // Another tenant's install sees none of them and cannot touch them.
    assert_eq!(call(b, "scheduler.list", json!({})).await, json!({"ok": []}));
    assert_eq!(call(b, "scheduler.get", json!({"id": id})).await, json!({"ok": null}));
    assert_eq!(
        call(b, "scheduler.delete", json!({"id": id})).await["ok"]["error"],
        "not-found"
    );

    assert_eq!(
        call(a, "scheduler.delete", json!({"id": id})).await["ok"],
        json!({"success": true, "error": null})
    );
    assert_eq!(
        call(a, "scheduler.list", json!({})).await["ok"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Schedules are install data: gone with the install.
    let a_id = a["install_id"].as_str().unwrap();
    assert_eq!(system.registry.database().schedules(a_id).await.unwrap().len(), 1);
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let (status, _, _) = system
        .call(
            crate::registry::authorized(http::Request::delete(&uri), ADMIN),
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(system.registry.database().schedules(a_id).await.unwrap().is_empty());
}

/// With the gateway and the registry in one process, a due schedule fires
/// through the gateway's path once per due time: its payload is the
/// guest's body (here the probe renames its own schedule), the run is
/// recorded on the schedule and in the execution log, and a firing that
/// cannot run (the install disabled) is recorded as an error.
#[tokio::test]
async fn a_due_schedule_fires_once_through_the_gateway() {
    use crate::registry::{ADMIN, Backend, HELLO, PUBLISHER, System};
    use ext_registry::{ScheduleEdit, ScheduleSpec};
    use ext_runner::gateway::schedules::fire_due;

    let env = [
        ("RUNNER_ROLES", "all"),
        ("GATEWAY_JWT_SECRET", "a-gateway-secret-of-32-bytes-or-more!"),
    ];
    let system = System::start(Backend::Sqlite, &env).await;
    let (status, body) = system.publish(PUBLISHER, &scheduling_archive()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, install) = system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::CREATED, "{install}");
    let install_id = install["install_id"].as_str().unwrap();
    let db = system.registry.database();
    let gateway = system.test.state.gateway.clone().expect("the gateway role runs");

    let spec = ScheduleSpec {
        endpoint_method: "POST".into(),
        endpoint_path: "/sync".into(),
        cron: "*/5 * * * *".into(),
        timezone: None,
        enabled: None,
        name: Some("before".into()),
        payload: None,
    };
    let schedule = db.create_schedule(install_id, &spec).await.unwrap();
    let id = schedule.schedule_id.clone();
    let payload = json!({"call": "scheduler.update", "args": {"id": id, "name": "renamed by its firing"}});
    let edit = ScheduleEdit {
        payload: Some(Some(payload.to_string())),
        ..ScheduleEdit::default()
    };
    db.update_schedule(install_id, &id, &edit).await.unwrap();
    let due = schedule.next_run_at.unwrap();

    assert!(
        fire_due(&gateway, db, ext_registry::Timestamp(due.0 - 1))
            .await
            .is_empty(),
        "not due yet"
    );
    let fired = fire_due(&gateway, db, due).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].schedule_id.as_str(), fired[0].status, &fired[0].error),
        (id.as_str(), 200, &None)
    );
    assert!(fire_due(&gateway, db, due).await.is_empty(), "each due time fires once");

    let after = db.schedule(install_id, &id).await.unwrap().unwrap();
    assert_eq!(
        after.name.as_deref(),
        Some("renamed by its firing"),
        "the payload reached the guest"
    );
    assert_eq!(
        (after.last_run_status.as_deref(), after.last_error.as_deref()),
        (Some("success"), None)
    );
    assert!(after.last_run_at.is_some());
    assert_eq!(after.next_run_at, Some(ext_registry::Timestamp(due.0 + 5 * 60_000)));

    // The execution log has the firing, under its request id (written off the path).
    let mut logged = None;
    for _ in 0..50 {
        let rows = db.executions("tenant-a", Some(HELLO), 10).await.unwrap();
        logged = rows.into_iter().find(|r| r.request_id == fired[0].request_id);
        if logged.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = logged.expect("the firing is in the execution log");
    assert_eq!(
        (logged.endpoint.as_str(), logged.status, logged.version.as_str()),
        ("schedule:POST /sync", 200, "1.0.0")
    );

    // Disabled: the next due time is claimed, refused, recorded.
    let (status, body) = system
        .install(ADMIN, "tenant-a", &json!({"version": "1.0.0", "enabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = after.next_run_at.unwrap();
    let fired = fire_due(&gateway, db, next).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].error.as_deref(), Some("install_disabled"));
    let refused = db.schedule(install_id, &id).await.unwrap().unwrap();
    assert_eq!(refused.last_run_status.as_deref(), Some("error"));
    assert!(
        refused.last_error.as_deref().unwrap().contains("disabled"),
        "{refused:?}"
    );
}
