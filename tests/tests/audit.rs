//! Issue 12: the audit trail. The log API over every event, the tamper-evident chain verified on
//! the topic, in the journal and in the audit read model, signed checkpoints, and the tenants who
//! must not read it.

use std::time::Duration;

use e2e::{aihub_binary, wait_for, Api, Env, Tenant, TEST_AUDIT_SEED};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use uuid::Uuid;

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

/// Every page of a listing, following `next_cursor`.
async fn all_pages(api: &Api, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let page = api.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        items.extend(page.body["data"].as_array().expect("data").iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_in_the_audit_log_filtered_paged_newest_first_with_update_diffs() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "audit-log", "pro").await;
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);

    let created = tenant
        .owner
        .post("/api/v1/teams", &json!({"name": "Research"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let team = created.body["id"].as_str().expect("team").to_string();
    let renamed = tenant
        .owner
        .send(
            tenant
                .owner
                .request(reqwest::Method::PUT, &format!("/api/v1/teams/{team}"))
                .header("x-request-id", "rename-research-1")
                .json(&json!({"name": "Labs"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    env.wait_until_projected(Duration::from_secs(60)).await;

    // Every event of the organization is there, once, newest first, across pages of one.
    let journal = env
        .count(&format!(
            "SELECT count(*) FROM journal WHERE org_id = '{}'",
            tenant.org_id
        ))
        .await;
    let everything = all_pages(&auditor, "/api/v1/audit/logs?limit=1000").await;
    assert_eq!(everything.len() as i64, journal);
    let paged = all_pages(&auditor, "/api/v1/audit/logs?limit=1").await;
    assert_eq!(paged, everything, "pages of one give the same list");
    let times: Vec<&str> = everything
        .iter()
        .map(|e| e["occurred_at"].as_str().expect("time"))
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);
    for event in &everything {
        assert!(event["actor"]["id"].as_str().is_some_and(|a| !a.is_empty()));
        assert!(event["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty()));
        assert!(event["chain"]["seq"].as_i64().is_some(), "{event}");
    }

    // Filters.
    let updated = auditor
        .get("/api/v1/audit/logs?event_type=team.updated")
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["data"].as_array().expect("data").len(), 1);
    let update = &updated.body["data"][0];
    assert_eq!(update["correlation_id"], "rename-research-1");
    assert_eq!(update["actor"]["type"], "api_key");
    let resource = auditor
        .get(&format!("/api/v1/audit/logs?resource=team:{team}"))
        .await;
    let types: Vec<&str> = resource.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["team.updated", "team.created"]);
    let by_request = auditor
        .get("/api/v1/audit/logs?correlation_id=rename-research-1")
        .await;
    assert_eq!(ids(&by_request.body), [update["id"].as_str().expect("id")]);
    let by_actor = auditor
        .get(&format!(
            "/api/v1/audit/logs?actor_type=api_key&actor_id={}",
            update["actor"]["id"].as_str().expect("actor")
        ))
        .await;
    assert!(ids(&by_actor.body).contains(&update["id"].as_str().expect("id").to_string()));
    let admins = all_pages(
        &auditor,
        "/api/v1/audit/logs?actor_type=platform_admin&limit=1000",
    )
    .await;
    assert!(admins
        .iter()
        .any(|e| e["event_type"] == "organization.created"));
    assert!(admins
        .iter()
        .all(|e| e["actor"]["type"] == "platform_admin"));
    let at = update["occurred_at"].as_str().expect("time");
    let since = all_pages(
        &auditor,
        &format!("/api/v1/audit/logs?limit=1000&from={at}"),
    )
    .await;
    assert!(since.iter().all(|e| e["occurred_at"].as_str() >= Some(at)));
    assert!(since.iter().any(|e| e["id"] == update["id"]));
    let before = all_pages(&auditor, &format!("/api/v1/audit/logs?limit=1000&to={at}")).await;
    assert!(before.iter().all(|e| e["id"] != update["id"]));
    assert_eq!(before.len() + since.len(), everything.len());

    // One event: the whole envelope, and what the update changed.
    let detail = auditor
        .get(&format!(
            "/api/v1/audit/logs/{}",
            update["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(
        detail.body["changes"],
        json!([{"field": "name", "before": "Research", "after": "Labs"}])
    );
    assert_eq!(detail.body["envelope"]["event_type"], "team.updated");
    assert_eq!(detail.body["envelope"]["chain"], update["chain"]);
    let created_detail = auditor
        .get(&format!(
            "/api/v1/audit/logs/{}",
            everything.last().expect("first event")["id"]
                .as_str()
                .expect("id")
        ))
        .await;
    assert_eq!(created_detail.body["changes"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_roles_get_403_another_org_gets_404_and_bad_filters_get_400() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let a = Tenant::create(&admin, "audit-a").await;
    let b = Tenant::create(&admin, "audit-b").await;
    let (_, auditor_b) = b.member_with_role(&admin, "auditor").await;
    let auditor_b = admin.with_token(&auditor_b);
    env.wait_until_projected(Duration::from_secs(60)).await;
    let a_event: String = env
        .db()
        .await
        .query_one(
            &format!(
                "SELECT event_id::text FROM journal WHERE org_id = '{}' LIMIT 1",
                a.org_id
            ),
            &[],
        )
        .await
        .expect("an event")
        .get(0);

    for role in ["developer", "viewer", "billing_manager"] {
        let (_, key) = a.member_with_role(&admin, role).await;
        let weak = admin.with_token(&key);
        for path in [
            "/api/v1/audit/logs".to_string(),
            format!("/api/v1/audit/logs/{a_event}"),
            "/api/v1/audit/verify".to_string(),
            "/api/v1/audit/public-key".to_string(),
        ] {
            let reply = weak.get(&path).await;
            let error = reply.assert_client_error(403);
            assert_eq!(error["param"], "audit:read", "{role} {path}");
        }
    }

    // An auditor of B sees nothing of A, not even that it exists.
    for path in [
        format!("/api/v1/audit/logs?org_id={}", a.org_id),
        format!("/api/v1/audit/logs/{a_event}"),
        format!("/api/v1/audit/verify?org_id={}", a.org_id),
    ] {
        auditor_b.get(&path).await.assert_client_error(404);
    }
    let own = all_pages(&auditor_b, "/api/v1/audit/logs?limit=1000").await;
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["org_id"] == json!(b.org_id)));

    for (query, param) in [
        ("actor_type=robot", "actor_type"),
        ("event_type=team.exploded", "event_type"),
        ("resource=not-a-stream", "resource"),
        ("from=yesterday", "from"),
        ("to=2026-13-45", "to"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("cursor=%25%25", "cursor"),
        ("limit=0", "limit"),
        ("correlation_id=a%00b", "correlation_id"),
        ("actor_id=a%00b", "actor_id"),
    ] {
        let reply = auditor_b.get(&format!("/api/v1/audit/logs?{query}")).await;
        let error = reply.assert_client_error(400);
        assert_eq!(error["param"], param, "{query}: {}", reply.body);
    }
    auditor_b
        .get("/api/v1/audit/logs/not-a-uuid")
        .await
        .assert_client_error(404);
}

/// `aihub audit verify --org`, run as the binary: its exit status and its JSON report.
async fn verify_binary(env: &Env, org: &str) -> (bool, Value) {
    let output = env
        .aihub_command(aihub_binary())
        .args(["audit", "verify", "--org", org])
        .env("AIHUB_AUDIT_SIGNING_KEY", TEST_AUDIT_SEED)
        .output()
        .await
        .expect("aihub audit verify runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "not a JSON report: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// The API's and the binary's verdicts, which must agree; returns the broken event's id and
/// where it was found, or None for a clean chain.
async fn verdict(env: &Env, auditor: &Api, org: &str) -> Option<(String, String)> {
    let api = auditor.get("/api/v1/audit/verify").await;
    assert_eq!(api.status, 200, "{}", api.body);
    let (ok, cli) = verify_binary(env, org).await;
    assert_eq!(api.body["ok"], json!(ok), "API {} vs CLI {cli}", api.body);
    assert_eq!(api.body["chains"][0]["broken"], cli["chains"][0]["broken"]);
    let broken = &api.body["chains"][0]["broken"];
    if ok {
        assert!(broken.is_null());
        None
    } else {
        Some((
            broken["event_id"].as_str().unwrap_or("none").to_string(),
            broken["source"].as_str().expect("source").to_string(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_chain_verifies_and_every_kind_of_tampering_is_named() {
    let mut env = Env::new().await;
    env.config.audit_checkpoint_every = Duration::from_millis(300);
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "audit-chain", "pro").await;
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);
    for name in ["one", "two", "three"] {
        let team = tenant
            .owner
            .post("/api/v1/teams", &json!({"name": name}))
            .await;
        assert_eq!(team.status, 201, "{}", team.body);
    }
    let org = tenant.org_id.clone();
    let db = env.db().await;
    // A checkpoint signs the head once it stops moving; then everything is projected.
    wait_for(
        Duration::from_secs(60),
        "a checkpoint of the settled head",
        || async {
            let last: Option<String> = db
                .query_one(
                    "SELECT (SELECT event_type FROM journal WHERE org_id = $1::text::uuid
                         ORDER BY chain_seq DESC LIMIT 1)",
                    &[&org],
                )
                .await
                .expect("last")
                .get(0);
            last.as_deref() == Some("audit.checkpoint")
        },
    )
    .await;
    env.wait_until_projected(Duration::from_secs(60)).await;

    let key = auditor.get("/api/v1/audit/public-key").await;
    assert_eq!(key.status, 200, "{}", key.body);
    let signer = events::audit::CheckpointSigner::from_seed_hex(TEST_AUDIT_SEED).expect("seed");
    assert_eq!(key.body["public_key"], signer.public_hex());

    let clean = auditor.get("/api/v1/audit/verify").await;
    assert_eq!(clean.status, 200, "{}", clean.body);
    assert_eq!(clean.body["ok"], true, "{}", clean.body);
    let chain = &clean.body["chains"][0];
    assert_eq!(chain["chain"], json!(org));
    assert!(chain["checkpoints"].as_u64() >= Some(1), "{chain}");
    assert_eq!(
        chain["events"].as_i64(),
        Some(
            env.count(&format!(
                "SELECT count(*) FROM journal WHERE org_id = '{org}'"
            ))
            .await
        )
    );
    assert_eq!(verdict(&env, &auditor, &org).await, None);

    let rows = db
        .query(
            "SELECT event_id::text, envelope::text FROM journal WHERE org_id = $1::text::uuid
             ORDER BY chain_seq",
            &[&org],
        )
        .await
        .expect("rows");
    let id = |i: usize| rows[i].get::<_, String>(0);
    let envelope = |i: usize| rows[i].get::<_, String>(1);

    // 1. One journal row's data updated.
    db.execute(
        "UPDATE journal SET envelope = jsonb_set(envelope::jsonb, '{correlation_id}', '\"forged\"')
         WHERE event_id = $1::text::uuid",
        &[&id(3)],
    )
    .await
    .expect("update");
    assert_eq!(
        verdict(&env, &auditor, &org).await,
        Some((id(3), "journal".into()))
    );
    db.execute(
        "UPDATE journal SET envelope = $2::text::jsonb WHERE event_id = $1::text::uuid",
        &[&id(3), &envelope(3)],
    )
    .await
    .expect("restore");
    assert_eq!(verdict(&env, &auditor, &org).await, None);

    // 2. Two journal events swapped.
    db.execute(
        "UPDATE journal SET envelope = CASE WHEN event_id = $1::text::uuid THEN $4::text::jsonb
                                            ELSE $3::text::jsonb END
         WHERE event_id IN ($1::text::uuid, $2::text::uuid)",
        &[&id(4), &id(5), &envelope(4), &envelope(5)],
    )
    .await
    .expect("swap");
    let swapped = verdict(&env, &auditor, &org).await.expect("broken");
    assert_eq!(swapped.1, "journal");
    assert!(swapped.0 == id(4) || swapped.0 == id(5), "{swapped:?}");
    for i in [4, 5] {
        db.execute(
            "UPDATE journal SET envelope = $2::text::jsonb WHERE event_id = $1::text::uuid",
            &[&id(i), &envelope(i)],
        )
        .await
        .expect("restore");
    }
    assert_eq!(verdict(&env, &auditor, &org).await, None);

    // 3. An audit row deleted; then one altered behind the API's back.
    let saved: String = db
        .query_one(
            "SELECT to_jsonb(a)::text FROM read.audit_log a WHERE event_id = $1::text::uuid",
            &[&id(2)],
        )
        .await
        .expect("the row")
        .get(0);
    db.execute(
        "DELETE FROM read.audit_log WHERE event_id = $1::text::uuid",
        &[&id(2)],
    )
    .await
    .expect("delete");
    assert_eq!(
        verdict(&env, &auditor, &org).await,
        Some((id(2), "read_model".into()))
    );
    db.execute(
        "INSERT INTO read.audit_log SELECT * FROM jsonb_populate_record(NULL::read.audit_log, $1::text::jsonb)",
        &[&saved],
    )
    .await
    .expect("restore");
    assert_eq!(verdict(&env, &auditor, &org).await, None);
    db.execute(
        "UPDATE read.audit_log SET actor_id = 'someone-else' WHERE event_id = $1::text::uuid",
        &[&id(1)],
    )
    .await
    .expect("update");
    assert_eq!(
        verdict(&env, &auditor, &org).await,
        Some((id(1), "read_model".into()))
    );
    db.execute(
        "UPDATE read.audit_log SET actor_id = $2 WHERE event_id = $1::text::uuid",
        &[&id(1), &rows_actor(&envelope(1))],
    )
    .await
    .expect("restore");
    assert_eq!(verdict(&env, &auditor, &org).await, None);

    // 4. Forged events produced straight to the topic: an altered copy of a real one, and a new
    // one linked after the head as the algorithm says (but never in the journal).
    // The relay's partitioner, so the forgeries land in the organization's partition, after its
    // events.
    let producer: FutureProducer = env
        .config
        .kafka
        .client_config()
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    let last = rows.len() - 1;
    let mut head: Value = serde_json::from_str(&envelope(last)).expect("json");
    let mut forged = head.clone();
    forged["event_id"] = json!(Uuid::now_v7());
    forged["stream_version"] = json!(head["stream_version"].as_i64().expect("version") + 1);
    let head_hash: [u8; 32] = hex::decode(head["chain"]["hash"].as_str().expect("hash"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let content = events::audit::content_hash(&forged);
    forged["chain"] = json!({
        "seq": head["chain"]["seq"].as_i64().expect("seq") + 1,
        "prev": hex::encode(head_hash),
        "hash": hex::encode(events::audit::link(&head_hash, &content)),
    });
    let produce = |payload: String| {
        let producer = producer.clone();
        let topic = env.config.topic.clone();
        let key = org.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    };
    produce(forged.to_string()).await;
    assert_eq!(
        verdict(&env, &auditor, &org).await,
        Some((
            forged["event_id"].as_str().expect("id").to_string(),
            "topic".into()
        ))
    );
    head["data"] = json!({"name": "rewritten"});
    produce(head.to_string()).await;
    assert_eq!(
        verdict(&env, &auditor, &org).await,
        Some((id(last), "topic".into()))
    );
}

fn rows_actor(envelope: &str) -> String {
    let value: Value = serde_json::from_str(envelope).expect("json");
    value["actor"]["id"].as_str().expect("actor").to_string()
}

/// The shipped offline verifier, run on a file: exit status and its line.
fn verify_offline(file: &std::path::Path, public_key: &str) -> (bool, String) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/audit/verify_export.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .args(["--public-key", public_key])
        .output()
        .expect("python3 runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_export_the_log_with_chain_proofs_that_verify_offline_and_are_audited() {
    let mut env = Env::new().await;
    env.config.audit_checkpoint_every = Duration::from_millis(300);
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "audit-export", "pro").await;
    let other = Tenant::create(&admin, "audit-export-other").await;
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);
    let (_, other_auditor) = other.member_with_role(&admin, "auditor").await;
    let other_auditor = admin.with_token(&other_auditor);
    let (_, developer) = tenant.member_with_role(&admin, "developer").await;
    let developer = admin.with_token(&developer);
    for name in ["one", "two"] {
        let team = tenant
            .owner
            .post("/api/v1/teams", &json!({"name": name}))
            .await;
        assert_eq!(team.status, 201, "{}", team.body);
    }
    let signer = events::audit::CheckpointSigner::from_seed_hex(TEST_AUDIT_SEED).expect("seed");
    let db = env.db().await;
    let org = tenant.org_id.clone();
    wait_for(Duration::from_secs(60), "a checkpoint", || async {
        env.count(&format!(
            "SELECT count(*) FROM read.audit_log WHERE org_id = '{org}' AND event_type = 'audit.checkpoint'"
        ))
        .await
            > 0
    })
    .await;

    developer
        .post("/api/v1/audit/logs/export", &json!({}))
        .await
        .assert_client_error(403);
    let bad = auditor
        .post("/api/v1/audit/logs/export", &json!({"event_type": "nope"}))
        .await;
    assert_eq!(bad.assert_client_error(400)["param"], "event_type");
    let bad = auditor
        .post("/api/v1/audit/logs/export", &json!({"format": "xml"}))
        .await;
    bad.assert_client_error(400);

    // Everything, as JSON Lines.
    let asked = auditor.post("/api/v1/audit/logs/export", &json!({})).await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let id = asked.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        asked.headers["location"].to_str().expect("location"),
        format!("/api/v1/audit/exports/{id}")
    );
    let status = auditor.get(&format!("/api/v1/audit/exports/{id}")).await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["status"], "ready");
    let file = auditor
        .http
        .get(auditor.url(&format!("/api/v1/audit/exports/{id}/download")))
        .bearer_auth(&auditor.token)
        .send()
        .await
        .expect("download");
    assert_eq!(file.status(), 200);
    let text = file.text().await.expect("text");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let export_seq: i64 = db
        .query_one(
            "SELECT chain_seq FROM journal WHERE stream_id = $1",
            &[&format!("audit_export:{id}")],
        )
        .await
        .expect("the export's event")
        .get(0);
    assert_eq!(
        lines.len() as i64,
        export_seq - 1,
        "every event before the export"
    );
    assert!(lines.iter().any(|l| l["event_type"] == "audit.checkpoint"));
    let path = std::env::temp_dir().join(format!("audit-{id}.jsonl"));
    std::fs::write(&path, &text).expect("write");
    let (ok, said) = verify_offline(&path, &signer.public_hex());
    assert!(ok, "{said}");
    let tampered = text.replacen("\"one\"", "\"uno\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&path, &tampered).expect("write");
    let (ok, said) = verify_offline(&path, &signer.public_hex());
    assert!(!ok, "{said}");
    let altered = lines
        .iter()
        .find(|l| l["data"]["name"] == "one")
        .expect("team one");
    assert!(
        said.contains(altered["event_id"].as_str().expect("id")),
        "{said}"
    );

    // Only team creations, as CSV: with the checkpoints among them, still verifying.
    let asked = auditor
        .post(
            "/api/v1/audit/logs/export",
            &json!({"format": "csv", "event_type": "team.created"}),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let csv_id = asked.body["id"].as_str().expect("id").to_string();
    let csv = auditor
        .http
        .get(auditor.url(&format!("/api/v1/audit/exports/{csv_id}/download")))
        .bearer_auth(&auditor.token)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert!(csv.starts_with("chain_seq,chain_prev,chain_hash,event_id,event_type"));
    assert_eq!(csv.matches(",team.created,").count(), 2, "{csv}");
    let path = std::env::temp_dir().join(format!("audit-{csv_id}.csv"));
    std::fs::write(&path, &csv).expect("write");
    let (ok, said) = verify_offline(&path, &signer.public_hex());
    assert!(ok, "{said}");

    // The exports are audited, and nobody else reads them.
    env.wait_until_projected(Duration::from_secs(60)).await;
    let exported = auditor
        .get("/api/v1/audit/logs?event_type=audit.exported")
        .await;
    assert_eq!(exported.body["data"].as_array().expect("data").len(), 2);
    assert_eq!(exported.body["data"][0]["data"]["export_id"], json!(csv_id));
    assert_eq!(
        exported.body["data"][0]["data"]["filters"],
        json!({"event_type": "team.created"})
    );
    assert_eq!(exported.body["data"][0]["actor"]["type"], "api_key");
    for path in [
        format!("/api/v1/audit/exports/{id}"),
        format!("/api/v1/audit/exports/{id}/download"),
    ] {
        other_auditor.get(&path).await.assert_client_error(404);
        let error = developer.get(&path).await;
        assert_eq!(error.assert_client_error(403)["param"], "audit:read");
    }
    auditor
        .get(&format!("/api/v1/audit/exports/{}", Uuid::now_v7()))
        .await
        .assert_client_error(404);
}

/// The journal's writer links its rows to the chain (`Journal::append`); the database checks
/// every link of a statement before it moves the head, so a writer that skips a place, forges a
/// hash, or links to a stale head writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_refuses_rows_that_do_not_link_to_their_chain() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "audit-links", "pro").await;
    let org = tenant.org_id.clone();
    let db = env.db().await;
    let (seq, hash): (i64, Vec<u8>) = {
        let row = db
            .query_one(
                "SELECT seq, hash FROM audit_chain_heads WHERE chain = $1",
                &[&org],
            )
            .await
            .expect("head");
        (row.get(0), row.get(1))
    };
    assert!(seq > 0, "the tenant's creation is chained");
    let before = env.count("SELECT count(*) FROM journal").await;
    let content = vec![7u8; 32];
    let link = |prev: &[u8]| -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::new()
            .chain_update(prev)
            .chain_update(&content)
            .finalize()
            .to_vec()
    };
    let insert = "INSERT INTO journal (event_id, stream_id, stream_version, event_type, org_id, envelope,
                      content_hash, chain_seq, chain_hash)
                  VALUES (gen_random_uuid(), 'chat:' || gen_random_uuid(), 1, 'chat.completion.failed',
                          $1::text::uuid, '{}'::jsonb, $2, $3, $4)";
    let cases: [(&str, i64, Vec<u8>); 3] = [
        ("a place skipped", seq + 2, link(&hash)),
        ("a forged hash", seq + 1, vec![1u8; 32]),
        ("linked to a stale head", seq, link(&hash)),
    ];
    for (case, at, chain_hash) in cases {
        let refused = db
            .execute(insert, &[&org, &content, &at, &chain_hash])
            .await
            .expect_err(case);
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{case}: {refused:?}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM journal").await, before);
    let head: i64 = db
        .query_one(
            "SELECT seq FROM audit_chain_heads WHERE chain = $1",
            &[&org],
        )
        .await
        .expect("head")
        .get(0);
    assert_eq!(head, seq, "the head did not move");

    // The right link is taken, and moves the head (rolled back: its envelope is no event, and
    // the relay would be handed it).
    let mut db = db;
    let tx = db.transaction().await.expect("transaction");
    tx.execute(insert, &[&org, &content, &(seq + 1), &link(&hash)])
        .await
        .expect("a row linked to the head");
    let moved: i64 = tx
        .query_one(
            "SELECT seq FROM audit_chain_heads WHERE chain = $1",
            &[&org],
        )
        .await
        .expect("head")
        .get(0);
    assert_eq!(moved, seq + 1);
    tx.rollback().await.expect("rollback");
}
