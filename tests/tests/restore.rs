//! The restore drill (issue 15): write through the API, back up, write more, drop the database,
//! restore, replay the read models, and compare every table with the original: once from the
//! backup (and the topic's events after it), once from the topic alone. Nothing may differ.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use e2e::upstream::Upstream;
use e2e::{admin_key, aihub_binary, Api, Env, Tenant};
use serde_json::{json, Value};

/// Every table's rows as sorted JSON text: the write side and every read model.
async fn snapshot(env: &Env) -> BTreeMap<String, Vec<String>> {
    let db = env.db().await;
    let tables = db
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables
             WHERE table_type = 'BASE TABLE' AND table_schema IN ('public', 'read')
             ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let mut all = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        let projection = match table.as_str() {
            // Bookkeeping of processes, not state: where consumers are, calls in flight, a
            // minute of rate counts, the migrations' own record.
            "public.projector_offsets"
            | "public.projector_applied"
            | "public.quota_reservations"
            | "public.rate_windows"
            | "public.schema_migrations"
            | "public.relay_leader" => continue,
            // When a row was written or published is the restore's own time; what it holds and
            // its order within its stream are compared.
            "public.journal" => "jsonb_build_object('event_id', event_id, 'stream_id', stream_id,
                 'stream_version', stream_version, 'event_type', event_type, 'org_id', org_id,
                 'envelope', envelope)"
                .to_string(),
            "public.api_key_blocks" => "to_jsonb(t) - 'since'".to_string(),
            _ => "to_jsonb(t)".to_string(),
        };
        let rows = db
            .query(&format!("SELECT ({projection})::text FROM {table} t"), &[])
            .await
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        let mut rows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        rows.sort();
        all.insert(table, rows);
    }
    all
}

fn assert_same(
    original: &BTreeMap<String, Vec<String>>,
    restored: &BTreeMap<String, Vec<String>>,
    how: &str,
) {
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        restored.keys().collect::<Vec<_>>(),
        "{how}: the same tables"
    );
    for (table, rows) in original {
        let other = &restored[table];
        if rows != other {
            let missing: Vec<_> = rows.iter().filter(|r| !other.contains(r)).take(3).collect();
            let extra: Vec<_> = other.iter().filter(|r| !rows.contains(r)).take(3).collect();
            panic!(
                "{how}: {table} differs ({} rows before, {} after)\nmissing: {missing:#?}\nextra: {extra:#?}",
                rows.len(),
                other.len()
            );
        }
    }
}

async fn drop_database(env: &Env) {
    let admin = e2e::database("postgres").connect().await.expect("postgres");
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", env.database))
        .await
        .expect("drop");
}

async fn aihub(env: &Env, args: &[&str]) -> (bool, String) {
    let output = env
        .aihub_command(aihub_binary())
        .args(args)
        .output()
        .await
        .expect("aihub runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Writes of every kind the write side keeps beside the journal: organizations (a slug changed,
/// one deleted), users, teams, roles, keys (one disabled, one revoked), a subscription, limits,
/// and chat calls (the quota's used tokens).
async fn work(admin: &Api, upstream: &Upstream, round: &str) {
    let tenant = Tenant::create_on(admin, &format!("drill-{round}"), "pro").await;
    let owner = &tenant.owner;
    let renamed = owner
        .put(
            &format!("/api/v1/organizations/{}", tenant.org_id),
            &json!({"slug": e2e::unique_slug(&format!("renamed-{round}"))}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let team = owner
        .post("/api/v1/teams", &json!({"name": format!("Team {round}")}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    let (member, _) = tenant.member_with_role(admin, "developer").await;
    let added = owner
        .post(
            &format!(
                "/api/v1/teams/{}/members",
                team.body["id"].as_str().unwrap_or_default()
            ),
            &json!({"user_id": member}),
        )
        .await;
    assert!(added.status < 300, "{}", added.body);
    for (name, change) in [
        ("disabled", json!({"enabled": false})),
        ("revoked", Value::Null),
    ] {
        let key = owner
            .post(
                "/api/v1/api-keys",
                &json!({"name": name, "permissions": ["chat:write"]}),
            )
            .await;
        assert_eq!(key.status, 201, "{}", key.body);
        let id = key.body["id"].as_str().unwrap_or_default().to_string();
        let reply = match change {
            Value::Null => owner.delete(&format!("/api/v1/api-keys/{id}")).await,
            body => owner.put(&format!("/api/v1/api-keys/{id}"), &body).await,
        };
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let limited = admin
        .put(
            &format!("/api/v1/organizations/{}/limits", tenant.org_id),
            &json!({"requests_per_minute": 1234}),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    let chat = admin_key(admin, &tenant.org_id, None, &["chat:write".into()]).await;
    for _ in 0..3 {
        let reply = admin
            .with_token(&chat)
            .post(
                "/api/v1/chat/completions",
                &json!({"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let doomed = Tenant::create(admin, &format!("doomed-{round}")).await;
    let deleted = admin
        .delete(&format!("/api/v1/organizations/{}", doomed.org_id))
        .await;
    assert!(deleted.status < 300, "{}", deleted.body);
    assert!(!upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_restore_drill_gives_back_every_table_from_a_backup_and_from_the_topic_alone() {
    let upstream = Upstream::start().await;
    let mut env = Env::new().await;
    env.route_one_model_to(&upstream, 1_000_000, 2_000_000);
    let (app, admin) = env.app().await;
    work(&admin, &upstream, "before").await;
    env.wait_until_projected(Duration::from_secs(30)).await;

    let dir = std::env::temp_dir().join(format!("aihub-backup-{}", uuid::Uuid::now_v7()));
    let dir_arg = dir.display().to_string();
    let (ok, out) = aihub(&env, &["backup", "--to", &dir_arg]).await;
    assert!(ok, "backup failed: {out}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let dumped = manifest["journal_events"].as_u64().expect("events");
    assert!(dumped > 20, "{manifest}");
    assert!(manifest["journal_position"].as_i64().expect("position") > 0);

    // Written after the backup: the topic brings these back.
    work(&admin, &upstream, "after").await;
    env.wait_until_projected(Duration::from_secs(30)).await;
    // Stopped: leases given back, the quota's usage written, every event relayed.
    app.stop().await;
    let original = snapshot(&env).await;
    let events = original["public.journal"].len() as u64;
    assert!(events > dumped, "the second round wrote more events");
    assert!(!original["public.api_key_blocks"].is_empty());
    assert!(!original["public.quota_usage"].is_empty());
    assert!(original["read.rate_limits"].len() >= 2);

    // A restore refuses a database that holds events, and writes nothing.
    let (ok, out) = aihub(&env, &["restore", "--from", &dir_arg]).await;
    assert!(!ok, "restored over live data: {out}");
    assert!(out.contains("empty database"), "{out}");
    assert_eq!(snapshot(&env).await, original);

    drop_database(&env).await;
    let (ok, out) = aihub(&env, &["restore", "--from", &dir_arg]).await;
    assert!(ok, "restore failed: {out}");
    assert!(
        out.contains(&format!(
            "{dumped} events from the backup, {} from the topic",
            events - dumped
        )),
        "{out}"
    );
    assert_same(
        &original,
        &snapshot(&env).await,
        "from the backup and the topic",
    );

    drop_database(&env).await;
    let (ok, out) = aihub(&env, &["restore", "--from-topic"]).await;
    assert!(ok, "restore from the topic failed: {out}");
    assert!(
        out.contains(&format!(
            "0 events from the backup, {events} from the topic"
        )),
        "{out}"
    );
    assert_same(&original, &snapshot(&env).await, "from the topic alone");

    // The restored platform serves: the owner's key still works, a revoked key does not.
    let (app, admin) = env.app().await;
    let orgs = admin.get("/api/v1/organizations?limit=100").await;
    assert_eq!(orgs.status, 200, "{}", orgs.body);
    assert!(orgs.body["data"].as_array().map(Vec::len).unwrap_or(0) >= 2);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_damaged_backup_is_refused_before_anything_is_written() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    Tenant::create(&admin, "damaged").await;
    env.wait_until_projected(Duration::from_secs(30)).await;
    app.stop().await;
    let dir = std::env::temp_dir().join(format!("aihub-backup-{}", uuid::Uuid::now_v7()));
    let dir_arg = dir.display().to_string();
    let (ok, out) = aihub(&env, &["backup", "--to", &dir_arg]).await;
    assert!(ok, "{out}");
    let (ok, out) = aihub(&env, &["verify-backup", "--from", &dir_arg]).await;
    assert!(ok && out.contains("intact"), "{out}");
    // A second backup into the same directory is refused.
    let (ok, out) = aihub(&env, &["backup", "--to", &dir_arg]).await;
    assert!(!ok && out.contains("already holds a backup"), "{out}");

    corrupt(&dir.join("journal.csv"));
    let (ok, out) = aihub(&env, &["verify-backup", "--from", &dir_arg]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("journal.csv") && out.contains("damaged"),
        "{out}"
    );
    drop_database(&env).await;
    let (ok, out) = aihub(&env, &["restore", "--from", &dir_arg, "--no-replay"]).await;
    assert!(!ok && out.contains("damaged"), "{out}");
    // Nothing was created: the database is still gone.
    let admin = e2e::database("postgres").connect().await.expect("postgres");
    let exists = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&env.database],
        )
        .await
        .expect("query")
        .get::<_, i64>(0);
    assert_eq!(exists, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn corrupt(file: &Path) {
    let mut bytes = std::fs::read(file).expect("read");
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    std::fs::write(file, bytes).expect("write");
}
