//! Organizations through the whole pipeline: HTTP → journal → relay → Kafka → projector → read
//! model → HTTP, against the real broker and real Postgres.

use std::time::Duration;

use e2e::{kafka, unique_slug, wait_for, Env};
use events::kafka::header_value;
use rdkafka::message::Message;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_organization_is_readable_right_after_post() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let slug = unique_slug("acme");
    let reply = api
        .post(
            "/api/v1/organizations",
            &json!({"name": "Acme Inc", "slug": slug, "owner_email": "Ops@Acme.example"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_string();
    assert!(reply.headers.get("x-request-id").is_some());

    let read = api.get(&format!("/api/v1/organizations/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body, reply.body, "GET returns what POST answered");
    assert_eq!(read.body["owner_email"], "ops@acme.example");
    // Version 2: created, then its owner added.
    assert_eq!(read.body["version"], 2);
    assert_eq!(read.headers["etag"], "\"2\"");

    let list = api.get("/api/v1/organizations").await;
    assert_eq!(list.status, 200);
    assert!(list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|o| o["id"] == id.as_str()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_is_on_the_topic_keyed_by_org_with_cloudevents_headers() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let id = api.create_org(&unique_slug("topic")).await.to_string();
    let request_id = "req-topic-check-1";
    let put = api
        .send(
            api.request(reqwest::Method::PUT, &format!("/api/v1/organizations/{id}"))
                .header("x-request-id", request_id)
                .json(&json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.headers["x-request-id"], request_id);

    let messages = kafka::read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(60),
        |seen| seen.iter().filter(|m| kafka::key(m) == id).count() >= 3,
    )
    .await;
    // Every event of the tenant is keyed by it: the organization's two and its subscription's.
    let keyed: Vec<_> = messages.iter().filter(|m| kafka::key(m) == id).collect();
    let subjects: Vec<String> = keyed
        .iter()
        .filter_map(|m| m.headers().and_then(|h| header_value(h, "ce_subject")))
        .collect();
    assert!(
        subjects.contains(&format!("subscription:{id}")),
        "{subjects:?}"
    );
    let stream = format!("organization:{id}");
    let ours: Vec<_> = keyed
        .into_iter()
        .filter(|m| {
            m.headers()
                .and_then(|h| header_value(h, "ce_subject"))
                .as_deref()
                == Some(stream.as_str())
        })
        .collect();
    assert_eq!(ours.len(), 2, "both events keyed by the organization id");
    for (message, (event_type, version)) in ours
        .iter()
        .zip([("organization.created", 1), ("organization.updated", 2)])
    {
        let headers = message.headers().expect("headers");
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().expect("payload")).expect("json");
        assert_eq!(
            header_value(headers, "ce_id").as_deref(),
            envelope["event_id"].as_str()
        );
        assert_eq!(
            header_value(headers, "ce_type").as_deref(),
            Some(event_type)
        );
        assert_eq!(
            header_value(headers, "ce_specversion").as_deref(),
            Some("1.0")
        );
        assert!(header_value(headers, "ce_source").is_some_and(|s| !s.is_empty()));
        assert_eq!(
            header_value(headers, "ce_time").as_deref(),
            envelope["occurred_at"].as_str()
        );
        assert_eq!(
            header_value(headers, "content-type").as_deref(),
            Some("application/json")
        );

        assert_eq!(envelope["event_type"], event_type);
        assert_eq!(envelope["schema_version"], 1);
        assert_eq!(envelope["org_id"], id.as_str());
        assert_eq!(envelope["stream_id"], format!("organization:{id}"));
        assert_eq!(envelope["stream_version"], version);
        assert_eq!(envelope["actor"]["type"], "platform_admin");
        assert!(envelope["actor"].get("id").is_some() && envelope["actor"].get("ip").is_some());
        assert!(envelope["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
        assert!(envelope.get("causation_id").is_some());
        assert!(envelope["data"].is_object());
        let event_id: uuid::Uuid = envelope["event_id"]
            .as_str()
            .expect("event id")
            .parse()
            .expect("uuid");
        assert_eq!(event_id.get_version_num(), 7, "event ids are UUIDv7");
    }
    let updated: serde_json::Value =
        serde_json::from_slice(ours[1].payload().expect("payload")).expect("json");
    assert_eq!(
        updated["correlation_id"], request_id,
        "the request id becomes the correlation id"
    );
    assert_eq!(updated["data"], json!({"name": "Renamed"}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_puts_on_one_version_one_wins_the_other_gets_409() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let id = api.create_org(&unique_slug("race")).await;
    let path = format!("/api/v1/organizations/{id}");
    for round in 0..3 {
        let version = api.get(&path).await.body["version"]
            .as_i64()
            .expect("version");
        let put = |name: String| {
            let api = api.clone();
            let path = path.clone();
            async move {
                api.send(
                    api.request(reqwest::Method::PUT, &path)
                        .header("if-match", format!("\"{version}\""))
                        .json(&json!({"name": name})),
                )
                .await
            }
        };
        let (a, b) = tokio::join!(put(format!("A{round}")), put(format!("B{round}")));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {} / {}",
            a.body,
            b.body
        );
        let loser = if a.status == 409 { &a } else { &b };
        loser.assert_client_error(409);
        let winner = if a.status == 200 { &a } else { &b };
        let now = api.get(&path).await;
        assert_eq!(
            now.body["name"], winner.body["name"],
            "the winner's write is the one kept"
        );
        assert_eq!(now.body["version"], version + 1);
    }
    // A stale If-Match after the fact is a conflict as well.
    let stale = api
        .send(
            api.request(reqwest::Method::PUT, &path)
                .header("if-match", "\"1\"")
                .json(&json!({"name": "late"})),
        )
        .await;
    stale.assert_client_error(409);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slug_is_unique_and_delete_makes_the_organization_404() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let slug = unique_slug("dup");
    let id = api.create_org(&slug).await;
    let again = api
        .post(
            "/api/v1/organizations",
            &json!({"name": "Other", "slug": slug}),
        )
        .await;
    assert_eq!(again.assert_client_error(409)["param"], "slug");

    let deleted = api.delete(&format!("/api/v1/organizations/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    api.get(&format!("/api/v1/organizations/{id}"))
        .await
        .assert_client_error(404);
    api.put(
        &format!("/api/v1/organizations/{id}"),
        &json!({"name": "x"}),
    )
    .await
    .assert_client_error(404);
    api.delete(&format!("/api/v1/organizations/{id}"))
        .await
        .assert_client_error(404);
    let list = api.get("/api/v1/organizations").await;
    assert!(!list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|o| o["id"] == id.to_string()));
    // The slug is free again once its organization is gone.
    api.create_org(&slug).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_an_opaque_cursor() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            api.create_org(&unique_slug(&format!("page{i}")))
                .await
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/organizations?limit=2&cursor={c}"),
            None => "/api/v1/organizations?limit=2".to_string(),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let data = page.body["data"].as_array().expect("data");
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|o| o["id"].as_str().expect("id").to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    created.sort();
    assert_eq!(
        seen, created,
        "every organization exactly once, in id order"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_respond_async_answers_202_with_location_at_once() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let reply = api
        .send(
            api.request(reqwest::Method::POST, "/api/v1/organizations")
                .header("prefer", "respond-async")
                .json(&json!({"name": "Async", "slug": unique_slug("async")})),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let location = reply.headers["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(
        location,
        format!(
            "/api/v1/organizations/{}",
            reply.body["id"].as_str().expect("id")
        )
    );
    wait_for(
        Duration::from_secs(30),
        "the accepted organization becomes readable",
        || {
            let api = api.clone();
            let location = location.clone();
            async move { api.get(&location).await.status == 200 }
        },
    )
    .await;
    app.stop().await;
}
