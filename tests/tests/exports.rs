//! Issue 13, item 7: usage exports cannot starve the platform. Twenty organizations' slow
//! readers hold their exports open while another tenant calls chat: every chat call is answered,
//! because exports stream from a pool of their own; a second export of one organization is 429;
//! and once the readers go, exports run again.

use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{admin_key, Api, Env, Tenant};
use platform::config::ProviderConfig;
use serde_json::json;

/// Calls per reader organization, written straight into the read model: enough that an export
/// does not fit in the socket buffers, so a reader that stops reading holds its stream.
const ROWS: i64 = 100_000;

async fn seed_calls(env: &Env, org_id: &str) {
    let db = env.db().await;
    let org = uuid::Uuid::parse_str(org_id).expect("org id");
    db.execute(
        "INSERT INTO read.chat_calls (event_id, org_id, request_id, model, provider, upstream_model, outcome,
                                      status, streamed, attempts, prompt_tokens, completion_tokens, total_tokens,
                                      cost_micros, latency_ms, occurred_at)
         SELECT gen_random_uuid(), $1, 'seeded-' || g || '-' || repeat('x', 120), 'gpt-4o', 'openrouter', 'openai/gpt-4o', 'succeeded',
                200, false, 1, 10, 20, 30, 7, 100, now() - interval '1 minute'
         FROM generate_series(1::bigint, $2::bigint) AS g",
        &[&org, &ROWS],
    )
    .await
    .expect("seeded calls");
}

fn export_of(api: &Api) -> reqwest::RequestBuilder {
    api.http
        .get(api.url("/api/v1/billing/usage/export?format=csv"))
        .bearer_auth(&api.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_slow_export_readers_do_not_starve_chat_calls() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    let file = e2e::one_model_catalog(1, 1);
    env.config.gateway.models_file = Some(file.display().to_string());
    env.config.gateway.providers = vec![ProviderConfig {
        name: "openrouter".into(),
        base_url: upstream.openai_base_url(),
        api_key: "or-test".into(),
    }];
    let (app, admin) = env.app().await;

    let readers: Vec<Tenant> = futures::future::join_all((0..20).map(|i| {
        let admin = admin.clone();
        async move { Tenant::create(&admin, &format!("reader-{i}")).await }
    }))
    .await;
    for reader in &readers {
        seed_calls(&env, &reader.org_id).await;
    }
    let caller_tenant = Tenant::create_on(&admin, "chatty", "pro").await;
    let key = admin_key(
        &admin,
        &caller_tenant.org_id,
        Some(&caller_tenant.owner_id),
        &["chat:write".into()],
    )
    .await;
    let caller = admin.with_token(&key);

    // Twenty readers open their exports, take the first bytes, and stop reading.
    let opened = futures::future::join_all(readers.iter().map(|reader| async move {
        let response = export_of(&reader.owner)
            .send()
            .await
            .expect("export answers");
        let status = response.status().as_u16();
        let mut response = response;
        if status == 200 {
            let first = response.chunk().await.expect("first bytes");
            assert!(first.is_some_and(|b| !b.is_empty()));
        }
        (status, response)
    }))
    .await;
    let streaming = opened.iter().filter(|(s, _)| *s == 200).count();
    assert!(streaming >= 1, "some exports stream");
    for (status, _) in &opened {
        assert!(
            [200, 503].contains(status),
            "an export beyond the export pool is 503, not a hang: {status}"
        );
    }
    // A second export of an organization whose export is streaming: one at a time.
    let (streaming_reader, _) = readers
        .iter()
        .zip(&opened)
        .find(|(_, (s, _))| *s == 200)
        .expect("a streaming reader");
    let second = export_of(&streaming_reader.owner)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        second.status(),
        429,
        "one export at a time per organization"
    );
    assert!(second.headers().get("retry-after").is_some());
    let error: serde_json::Value = second.json().await.expect("error body");
    assert_eq!(error["error"]["code"], "export_in_progress");

    // Meanwhile, chat calls (authentication, quota, the journal: the main pool) are answered.
    for i in 0..30 {
        let reply = caller
            .post(
                "/api/v1/chat/completions",
                &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("call {i}")}]}),
            )
            .await;
        assert_eq!(
            reply.status, 200,
            "call {i} while exports are held: {}",
            reply.body
        );
    }

    // The readers go; exports run again, whole.
    drop(opened);
    let again = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = export_of(&readers[0].owner).send().await.expect("export");
            if response.status() == 200 {
                break response.text().await.expect("csv");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the export runs once the slow readers are gone");
    let lines = again.lines().count() as i64;
    assert!(
        lines == ROWS + 1,
        "the header and every call: {lines} lines"
    );
    app.stop().await;
}
