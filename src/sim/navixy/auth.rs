//! The plain HTTP calls of the Navixy simulator: `…/user/auth` (login, issuing a
//! fresh hash each time), `…/user/session/renew`, and the REST history calls (see
//! `rest`), by POST with a JSON or form body or by GET with query parameters.
//!
//! Answers with Navixy's error shape and HTTP 400 on failure, as documented. It
//! never logs credentials or hashes.

use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::Shared;
use crate::sim::http::{self, RequestHead};

/// Answers one plain HTTP request and closes the connection.
pub(super) async fn serve_http(
    shared: &Shared,
    mut stream: TcpStream,
    head: &RequestHead,
    leftover: Vec<u8>,
) {
    let body = http::read_body(&mut stream, head, leftover)
        .await
        .unwrap_or_default();
    let mut fields = body_fields(&body);
    for (k, v) in head.query_pairs() {
        fields.entry(k).or_insert(Value::from(v));
    }
    if let Some((status, answer)) = shared.rest_call(head.path(), &fields).await {
        let _ = http::respond(
            &mut stream,
            status,
            &[],
            "application/json",
            answer.to_string().as_bytes(),
        )
        .await;
        return;
    }
    let field = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (status, answer) = if head.path().ends_with("/user/auth") {
        shared.stats.update(|s| s.auth_calls += 1);
        login(shared, &field("login"), &field("password"))
    } else if head.path().ends_with("/user/session/renew") {
        if shared.hash_valid(&field("hash")) {
            (200, json!({"success": true}))
        } else {
            (
                400,
                error_body(4, "User or API key not found or session ended"),
            )
        }
    } else {
        (404, error_body(111, "Wrong handler"))
    };
    let _ = http::respond(
        &mut stream,
        status,
        &[],
        "application/json",
        answer.to_string().as_bytes(),
    )
    .await;
}

/// Request fields from a JSON or form-encoded body.
fn body_fields(body: &[u8]) -> serde_json::Map<String, Value> {
    if let Ok(Value::Object(map)) = serde_json::from_slice(body) {
        return map;
    }
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect()
}

fn error_body(code: u16, description: &str) -> Value {
    json!({"success": false, "status": {"code": code, "description": description}})
}

fn login(shared: &Shared, login: &str, password: &str) -> (u16, Value) {
    if login != shared.cfg.login || password != shared.cfg.password {
        return (400, error_body(102, "Wrong login or password"));
    }
    if shared.cfg.two_factor {
        return (
            200,
            json!({"success": true, "type": "second_factor_required"}),
        );
    }
    let hash: String = {
        let bytes: [u8; 16] = rand::rng().random();
        hex::encode(bytes)
    };
    shared.auth().issued.insert(hash.clone());
    shared.stats.update(|s| s.hashes_issued += 1);
    (
        200,
        json!({"success": true, "type": "authenticated", "hash": hash}),
    )
}
