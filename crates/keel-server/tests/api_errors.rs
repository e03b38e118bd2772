//! Bad input gets a clear 4xx JSON error with a machine-readable code, the header block is on
//! every response, and the node keeps working.

mod common;

use common::Cluster;
use serde_json::{json, Value};
use std::time::Duration;

async fn send(
    c: &Cluster,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.http.request(method, c.url(0, path));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path}: body is not JSON: {text:?}"));
    (status, headers, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors_and_the_node_survives() {
    use reqwest::Method;
    let mut c = Cluster::start(1, 10_000).await;
    c.wait_leader(Duration::from_secs(10)).await;

    // (method, path, body, expected status, code, field)
    type Case = (
        Method,
        String,
        Option<String>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (Method::GET, "/nope".into(), None, 404, "NOT_FOUND", None),
        (
            Method::POST,
            "/v1/kv/a".into(),
            Some("{}".into()),
            405,
            "METHOD_NOT_ALLOWED",
            None,
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some("{not json".into()),
            400,
            "BAD_REQUEST",
            Some("body"),
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some(r#"{"value": 5}"#.into()),
            400,
            "BAD_REQUEST",
            Some("value"),
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some("{}".into()),
            400,
            "BAD_REQUEST",
            Some("value"),
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some(r#"{"value_b64": "%%%"}"#.into()),
            400,
            "BAD_REQUEST",
            Some("value_b64"),
        ),
        (
            Method::GET,
            "/v1/kv-b64/!!".into(),
            None,
            400,
            "BAD_REQUEST",
            Some("key"),
        ),
        (
            Method::GET,
            "/v1/kv/a?read=sometimes".into(),
            None,
            400,
            "BAD_REQUEST",
            Some("read"),
        ),
        (
            Method::GET,
            "/v1/kv/a?min_revision=-1".into(),
            None,
            400,
            "BAD_REQUEST",
            Some("min_revision"),
        ),
        (
            Method::GET,
            format!("/v1/kv/{}", "k".repeat(5000)),
            None,
            400,
            "BAD_REQUEST",
            Some("key"),
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some(json!({"value": "v".repeat((1 << 20) + 1)}).to_string()),
            400,
            "BAD_REQUEST",
            Some("value"),
        ),
        (
            Method::PUT,
            "/v1/kv/a".into(),
            Some(json!({"value": "v".repeat(3 << 20)}).to_string()),
            413,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
        (
            Method::POST,
            "/v1/txn".into(),
            Some(r#"{"compare": [{"key": "a", "target": "nope", "op": "=="}]}"#.into()),
            400,
            "BAD_REQUEST",
            Some("compare[0].target"),
        ),
        (
            Method::DELETE,
            "/v1/members/0".into(),
            None,
            400,
            "BAD_REQUEST",
            Some("id"),
        ),
    ];
    for (method, path, body, status, code, field) in cases {
        let shown = path.chars().take(40).collect::<String>();
        let (got, headers, v) = send(&c, method.clone(), &path, body.as_deref()).await;
        assert_eq!(got, status, "{method} {shown}: {v}");
        assert_eq!(v["code"], code, "{method} {shown}: {v}");
        assert!(v["message"].is_string() && v["retry"].is_string(), "{v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{method} {shown}: {v}");
        }
        for h in [
            "x-keel-term",
            "x-keel-leader",
            "x-keel-revision",
            "x-keel-applied-index",
            "x-keel-config-version",
            "x-keel-served-by",
        ] {
            assert!(headers.contains_key(h), "{method} {shown}: missing {h}");
        }
    }

    // Non-UTF-8 keys and values travel base64-encoded.
    let (code, _, v) = send(
        &c,
        Method::PUT,
        "/v1/kv-b64/_w",
        Some(r#"{"value_b64": "/wA="}"#),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _, v) = send(&c, Method::GET, "/v1/kv-b64/_w", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["kv"]["key_b64"], "/w==");
    assert_eq!(v["kv"]["value_b64"], "/wA=");

    // Still healthy.
    let (code, body) = c.put(0, "after", "ok").await;
    assert_eq!(code, 200, "{body}");
    let (code, _, v) = send(&c, Method::GET, "/health", None).await;
    assert_eq!((code, v["status"].clone()), (200, json!("ok")));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_txn_range_and_delete() {
    use reqwest::Method;
    let mut c = Cluster::start(1, 10_000).await;
    c.wait_leader(Duration::from_secs(10)).await;
    for (k, v) in [("p/a", "1"), ("p/b", "2"), ("q", "3")] {
        assert_eq!(c.put(0, k, v).await.0, 200);
    }
    let (code, _, v) = send(&c, Method::POST, "/v1/range", Some(r#"{"prefix": "p/"}"#)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["count"], 2);
    assert_eq!(v["kvs"][1]["value"], "2");
    assert_eq!(v["served"]["level"], "linearizable");
    let (code, _, v) = send(
        &c,
        Method::POST,
        "/v1/cas",
        Some(r#"{"key": "q", "expected_value": "3", "value": "4"}"#),
    )
    .await;
    assert_eq!((code, v["succeeded"].clone()), (200, json!(true)), "{v}");
    let (code, _, v) = send(
        &c,
        Method::POST,
        "/v1/cas",
        Some(r#"{"key": "q", "expected_value": "3", "value": "5"}"#),
    )
    .await;
    assert_eq!((code, v["succeeded"].clone()), (200, json!(false)), "{v}");
    let txn = r#"{"compare": [{"key": "q", "target": "value", "op": "==", "value": "4"}],
                  "success": [{"put": {"key": "t", "value": "yes"}}, {"get": {"key": "p/a"}}],
                  "failure": [{"put": {"key": "t", "value": "no"}}]}"#;
    let (code, _, v) = send(&c, Method::POST, "/v1/txn", Some(txn)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["succeeded"], true);
    assert_eq!(v["responses"][1]["get"]["kv"]["value"], "1");
    let (code, _, v) = send(&c, Method::DELETE, "/v1/kv/p%2Fa", None).await;
    assert_eq!((code, v["deleted"].clone()), (200, json!(1)), "{v}");
    let (_, body) = c.get(0, "p%2Fa", "").await;
    assert_eq!(body["kv"], Value::Null);
    c.shutdown_all().await;
}
