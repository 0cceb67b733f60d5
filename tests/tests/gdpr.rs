//! GDPR data-subject requests on an immutable log (issue 12): access exports what an
//! organization holds about a person; erasure destroys the person's key, after which their email
//! and name are in no table, no API answer, no export and no decrypted read of the topic — while
//! the erasure stays in the audit log and the chain still verifies.

use std::time::Duration;

use e2e::kafka::read_until;
use e2e::{admin_key, aihub_binary, all_permissions, Api, Env, Tenant, TEST_AUDIT_SEED};
use events::{EventEnvelope, EventPayload};
use rdkafka::Message;
use serde_json::{json, Value};
use uuid::Uuid;

/// Every base table of every schema of the test database whose rows, as text, contain `needle`
/// (case-insensitive), with the count of such rows.
async fn tables_holding(env: &Env, needle: &str) -> Vec<(String, i64)> {
    let db = env.db().await;
    let tables = db
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    assert!(tables.len() > 20, "only {} tables found", tables.len());
    let mut holding = Vec::new();
    for row in tables {
        let table: String = row.get(0);
        let count: i64 = db
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} t WHERE strpos(lower(t::text), lower($1)) > 0"
                ),
                &[&needle],
            )
            .await
            .unwrap_or_else(|e| panic!("scanning {table}: {e}"))
            .get(0);
        if count > 0 {
            holding.push((table, count));
        }
    }
    holding
}

/// Every event of the test's topic, decoded and opened the way the platform opens them (with
/// the persons' keys that exist in the database), until `last` has been read; with the raw
/// payloads.
async fn topic_opened(env: &Env, last: Uuid) -> (Vec<EventEnvelope>, Vec<String>) {
    let published = env
        .count("SELECT (SELECT count(*) FROM journal) - (SELECT count(*) FROM journal_outbox)")
        .await as usize;
    let messages = read_until(
        &env.config.kafka,
        &env.config.topic,
        Duration::from_secs(60),
        |seen| {
            seen.len() >= published
                && seen.iter().any(|m| {
                    m.payload()
                        .and_then(|p| EventEnvelope::decode(p).ok())
                        .is_some_and(|e| e.event_id == last)
                })
        },
    )
    .await;
    let raw: Vec<String> = messages
        .iter()
        .filter_map(|m| m.payload().map(|p| String::from_utf8_lossy(p).into_owned()))
        .collect();
    let mut events: Vec<EventEnvelope> = messages
        .iter()
        .filter_map(|m| m.payload().and_then(|p| EventEnvelope::decode(p).ok()))
        .collect();
    let db = env.db().await;
    platform::personal::open(&db, &mut events)
        .await
        .expect("opens");
    (events, raw)
}

async fn verify_binary(env: &Env, org: &str) -> (bool, String) {
    let output = env
        .aihub_command(aihub_binary())
        .args(["audit", "verify", "--org", org])
        .env("AIHUB_AUDIT_SIGNING_KEY", TEST_AUDIT_SEED)
        .output()
        .await
        .expect("aihub audit verify runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Every page of the organization's audit log, as text.
async fn whole_audit_log(api: &Api) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut entries = Vec::new();
    let mut path = "/api/v1/audit/logs?limit=100".to_string();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        text.push_str(&page.body.to_string());
        entries.extend(page.body["data"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(cursor) if page.body["has_more"] == json!(true) => {
                path = format!("/api/v1/audit/logs?limit=100&cursor={cursor}");
            }
            _ => break,
        }
    }
    (text, entries)
}

async fn download(api: &Api, path: &str) -> String {
    let response = api
        .http
        .get(api.url(path))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_person_is_in_no_table_answer_export_or_topic_read_and_the_chain_still_verifies()
{
    let env = Env::new().await;
    let (_running, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "gdpr", "pro").await;
    let officer = &tenant.owner;
    let tag = Uuid::now_v7().simple().to_string();
    let email = format!("ada.{tag}@gdpr.example");
    let name = format!("Ada Lovelace {tag}");

    // The person: a user with a name and a role, in a team, with keys they own and a key they
    // created, and the organization's owner email.
    let created = officer
        .post("/api/v1/users", &json!({"email": email, "name": name}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let person_id = created.body["id"].as_str().expect("id").to_string();
    let role = officer
        .post(
            &format!("/api/v1/users/{person_id}/roles"),
            &json!({"role": "developer"}),
        )
        .await;
    assert_eq!(role.status, 200, "{}", role.body);
    let person_key = admin_key(&admin, &tenant.org_id, Some(&person_id), &all_permissions()).await;
    let person = admin.with_token(&person_key);
    let theirs = person
        .post(
            "/api/v1/api-keys",
            &json!({"name": "made by Ada", "permissions": ["models:read"]}),
        )
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    let team = officer
        .post("/api/v1/teams", &json!({"name": "Engines"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    let team_id = team.body["id"].as_str().expect("team").to_string();
    let member = officer
        .post(
            &format!("/api/v1/teams/{team_id}/members"),
            &json!({"user_id": person_id}),
        )
        .await;
    assert!(
        member.status == 200 || member.status == 201,
        "{}",
        member.body
    );
    let org = officer
        .put(
            &format!("/api/v1/organizations/{}", tenant.org_id),
            &json!({"owner_email": email}),
        )
        .await;
    assert_eq!(org.status, 200, "{}", org.body);

    // Another organization's person, under another email.
    let other = Tenant::create(&admin, "gdpr-other").await;
    let other_email = format!("grace.{tag}@gdpr.example");
    let other_person = other
        .owner
        .post("/api/v1/users", &json!({"email": other_email}))
        .await;
    assert_eq!(other_person.status, 201, "{}", other_person.body);

    // Access: everything the organization holds about the person.
    let access = officer
        .post(
            "/api/v1/audit/gdpr/access",
            &json!({"email": email.to_uppercase()}),
        )
        .await;
    assert_eq!(access.status, 200, "{}", access.body);
    let data = &access.body;
    assert_eq!(data["object"], "gdpr.personal_data");
    assert_eq!(data["users"][0]["id"], json!(person_id));
    assert_eq!(data["users"][0]["email"], json!(email));
    assert_eq!(data["users"][0]["name"], json!(name));
    assert_eq!(data["users"][0]["roles"][0]["role"], "developer");
    assert_eq!(data["team_memberships"][0]["team_id"], json!(team_id));
    let keys: Vec<&str> = data["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert!(
        keys.contains(&"test key") && keys.contains(&"made by Ada"),
        "the key they own and the key they made: {keys:?}"
    );
    let acted: Vec<&str> = data["audit_events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for wanted in ["user.created", "user.role_assigned", "api_key.created"] {
        assert!(acted.contains(&wanted), "{wanted} missing from {acted:?}");
    }

    // Before the erasure, the scan and the topic read can find the person: they are able to.
    env.wait_until_projected(Duration::from_secs(60)).await;
    let before = tables_holding(&env, &email).await;
    assert!(
        before.iter().any(|(t, _)| t == "read.users"),
        "the scan finds the email in clear in the read model: {before:?}"
    );
    assert!(
        !before
            .iter()
            .any(|(t, _)| t == "public.journal" || t == "read.audit_log"),
        "events carry the email sealed, never in clear: {before:?}"
    );

    // Weak roles, other organizations, bad input.
    let (_, viewer_key) = tenant.member_with_role(&admin, "viewer").await;
    let viewer = admin.with_token(&viewer_key);
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);
    for path in ["/api/v1/audit/gdpr/access", "/api/v1/audit/gdpr/erasure"] {
        let error = viewer.post(path, &json!({"email": email})).await;
        let missing = error.assert_client_error(403)["param"].clone();
        assert!(
            missing == "compliance:write" || missing == "users:write",
            "{path}: {missing}"
        );
        // The person themself, a developer, cannot either.
        person
            .post(path, &json!({"email": email}))
            .await
            .assert_client_error(403);
        // Another organization's person is unknown here, by email or by naming the organization.
        officer
            .post(path, &json!({"email": other_email}))
            .await
            .assert_client_error(404);
        officer
            .post(path, &json!({"email": other_email, "org_id": other.org_id}))
            .await
            .assert_client_error(404);
        other
            .owner
            .post(path, &json!({"email": email}))
            .await
            .assert_client_error(404);
        for bad in [json!({"email": "not-an-email"}), json!({"email": "a@b@c"})] {
            let error = officer.post(path, &bad).await;
            assert_eq!(error.assert_client_error(400)["param"], "email", "{bad}");
        }
        officer
            .post(path, &json!({}))
            .await
            .assert_client_error(400);
        officer
            .post(path, &json!({"email": 7}))
            .await
            .assert_client_error(400);
    }
    // An auditor may see what is held, not erase it.
    let audited = auditor
        .post("/api/v1/audit/gdpr/access", &json!({"email": email}))
        .await;
    assert_eq!(audited.status, 200, "{}", audited.body);
    let refused = auditor
        .post("/api/v1/audit/gdpr/erasure", &json!({"email": email}))
        .await;
    assert_eq!(refused.assert_client_error(403)["param"], "users:write");

    // The erasure.
    let erased = officer
        .post("/api/v1/audit/gdpr/erasure", &json!({"email": email}))
        .await;
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.body["user_ids"], json!([person_id]));
    assert_eq!(erased.body["key_ids"].as_array().map(Vec::len), Some(1));
    let erasure_id: Uuid = erased.body["event_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("event id");
    // Erased once: there is nothing left to find under the email.
    officer
        .post("/api/v1/audit/gdpr/erasure", &json!({"email": email}))
        .await
        .assert_client_error(404);

    // An export of the whole log, asked after the erasure.
    let asked = officer.post("/api/v1/audit/logs/export", &json!({})).await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let export_id = asked.body["id"].as_str().expect("id").to_string();
    let asked_csv = officer
        .post("/api/v1/audit/logs/export", &json!({"format": "csv"}))
        .await;
    assert_eq!(asked_csv.status, 202, "{}", asked_csv.body);
    let csv_id = asked_csv.body["id"].as_str().expect("id").to_string();
    env.wait_until_projected(Duration::from_secs(60)).await;

    // No table.
    for needle in [&email, &name] {
        let holding = tables_holding(&env, needle).await;
        assert!(holding.is_empty(), "{needle} is still in {holding:?}");
    }

    // No API answer.
    let mut answers = Vec::new();
    let users = officer.get("/api/v1/users?limit=100").await;
    assert_eq!(users.status, 200, "{}", users.body);
    let shown = users.body["data"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["id"] == json!(person_id))
        .cloned()
        .expect("the user remains");
    assert_eq!(shown["email"], "[erased]");
    assert_eq!(shown["name"], "[erased]");
    answers.push(users.body.to_string());
    let one = officer.get(&format!("/api/v1/users/{person_id}")).await;
    assert_eq!(one.body["email"], "[erased]", "{}", one.body);
    answers.push(one.body.to_string());
    let organization = officer
        .get(&format!("/api/v1/organizations/{}", tenant.org_id))
        .await;
    assert_eq!(
        organization.body["owner_email"], "[erased]",
        "{}",
        organization.body
    );
    answers.push(organization.body.to_string());
    let (log, entries) = whole_audit_log(officer).await;
    answers.push(log);
    for entry in &entries {
        let id = entry["id"]
            .as_str()
            .or(entry["event_id"].as_str())
            .expect("id");
        let full = officer.get(&format!("/api/v1/audit/logs/{id}")).await;
        assert_eq!(full.status, 200, "{}", full.body);
        answers.push(full.body.to_string());
    }
    let erasures: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event_type"] == "person.erased")
        .collect();
    assert_eq!(erasures.len(), 1, "the erasure stays in the audit log");
    assert_eq!(erasures[0]["data"]["user_ids"], json!([person_id]));
    answers.push(
        officer
            .post("/api/v1/audit/gdpr/access", &json!({"email": other_email}))
            .await
            .body
            .to_string(),
    );
    for answer in &answers {
        for needle in [&email, &name] {
            assert!(
                !answer.to_lowercase().contains(&needle.to_lowercase()),
                "{needle} in an answer: {answer}"
            );
        }
    }

    // No export file.
    let jsonl = download(
        officer,
        &format!("/api/v1/audit/exports/{export_id}/download"),
    )
    .await;
    let csv = download(officer, &format!("/api/v1/audit/exports/{csv_id}/download")).await;
    assert!(jsonl.contains("person.erased") && csv.contains("person.erased"));
    for file in [&jsonl, &csv] {
        for needle in [&email, &name] {
            assert!(
                !file.to_lowercase().contains(&needle.to_lowercase()),
                "{needle} exported"
            );
        }
    }

    // No read of the topic, raw or decrypted by the platform's own keys.
    let (events, raw) = topic_opened(&env, erasure_id).await;
    for text in raw.iter().chain(
        events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.encode()).into_owned())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        for needle in [&email, &name] {
            assert!(
                !text.to_lowercase().contains(&needle.to_lowercase()),
                "{needle} on the topic: {text}"
            );
        }
    }
    let person_created = events
        .iter()
        .find(|e| e.stream_id.to_string() == format!("user:{person_id}"))
        .expect("the person's user.created");
    match &person_created.payload {
        EventPayload::UserCreated(user) => {
            assert_eq!(user.email.shown(), "[erased]");
            assert_eq!(user.name.as_ref().map(|n| n.shown()), Some("[erased]"));
        }
        other => panic!("not user.created: {other:?}"),
    }
    // The other organization's person still opens.
    assert!(events.iter().any(|e| matches!(&e.payload,
        EventPayload::UserCreated(u) if u.email.shown() == other_email)));

    // The keys topic: the person's key was published wrapped (never the email), and its last
    // message is a tombstone, so compaction removes every copy; the other person's key is
    // there, and opens to the key the database holds.
    let erased_key = erased.body["key_ids"][0]
        .as_str()
        .expect("key id")
        .to_string();
    let keys_topic = platform::personal::keys_topic(&env.config.topic);
    let key_messages = read_until(
        &env.config.kafka,
        &keys_topic,
        Duration::from_secs(60),
        |seen| {
            seen.iter()
                .any(|m| m.key() == Some(erased_key.as_bytes()) && m.payload().is_none())
        },
    )
    .await;
    let of_erased: Vec<_> = key_messages
        .iter()
        .filter(|m| m.key() == Some(erased_key.as_bytes()))
        .collect();
    assert!(of_erased.len() >= 2, "published, then a tombstone");
    assert!(of_erased.last().is_some_and(|m| m.payload().is_none()));
    for message in &key_messages {
        let text = String::from_utf8_lossy(message.payload().unwrap_or_default()).to_lowercase();
        assert!(
            !text.contains(&email.to_lowercase()) && !text.contains(&other_email.to_lowercase())
        );
    }
    let db = env.db().await;
    let other_key: (Uuid, Vec<u8>) = db
        .query_one(
            "SELECT key_id, key FROM person_keys WHERE org_id = $1 AND key IS NOT NULL
             ORDER BY key_id LIMIT 1",
            &[&Uuid::parse_str(&other.org_id).expect("org id")],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .expect("the other person's key");
    let published = key_messages
        .iter()
        .rev()
        .find(|m| m.key() == Some(other_key.0.to_string().as_bytes()))
        .and_then(|m| m.payload())
        .and_then(platform::personal::KeyRecord::unwrap)
        .expect("the other person's key is on the keys topic and opens");
    assert_eq!(published.key, other_key.1);

    // The chain hashed the ciphertext: the erasure broke nothing.
    let (ok, report) = verify_binary(&env, &tenant.org_id).await;
    assert!(ok, "aihub audit verify after the erasure: {report}");
    let verified = officer.get("/api/v1/audit/verify").await;
    assert_eq!(verified.body["ok"], json!(true), "{}", verified.body);

    // The other organization's person is untouched.
    let theirs = other.owner.get("/api/v1/users?limit=100").await;
    assert!(
        theirs.body.to_string().contains(&other_email),
        "{}",
        theirs.body
    );

    // The email is free again: the same address is a new person now.
    let again = officer
        .post("/api/v1/users", &json!({"email": email}))
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_ne!(again.body["id"], json!(person_id));
}
