//! `kill -9`: a `keyward serve` process killed while it creates keys loses no key it
//! acknowledged, and no key is stored without the audit event of its creation (each change
//! commits with its event in one transaction).

use serde_json::json;
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{ServeProcess, TestApp};

const WRITERS: usize = 8;

#[sqlx::test]
async fn kill_9_loses_no_acknowledged_key_and_stores_none_without_its_event(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tenant = app.tenant("acme").await;
    let mut server = ServeProcess::start(app.command(), std::process::Stdio::null()).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (url, admin, acknowledged) = (
            format!("{}/v1/tenants/{tenant}/keys", server.base),
            app.admin.clone(),
            acknowledged.clone(),
        );
        writers.spawn(async move {
            let http = reqwest::Client::new();
            for n in 0.. {
                let sent = http
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("w{writer}-{n}")}))
                    .send()
                    .await;
                let Ok(reply) = sent else { break }; // the server is gone
                if reply.status() != reqwest::StatusCode::CREATED {
                    break;
                }
                let Ok(body) = reply.json::<serde_json::Value>().await else {
                    break;
                };
                acknowledged
                    .lock()
                    .unwrap()
                    .push(body["key"]["id"].as_str().unwrap().to_owned());
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    server.kill();
    while writers.join_next().await.is_some() {}

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > WRITERS,
        "only {} keys were created before the kill",
        acknowledged.len()
    );
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT k.id FROM api_keys k
         JOIN audit_events e ON e.action = 'key.created' AND e.target_id = k.id
         WHERE k.id = ANY($1)",
    )
    .bind(&acknowledged)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "acknowledged keys lost, or stored without their event"
    );
    let without_event: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys k WHERE k.kind = 'customer' AND NOT EXISTS
           (SELECT 1 FROM audit_events e WHERE e.action = 'key.created' AND e.target_id = k.id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(without_event, 0, "keys stored without the event of their creation");
}
