//! Issue 12, point-in-time replay: `GET /audit/state?as_of=` and `aihub replay --org --as-of
//! --schema` rebuild an organization's users, roles, teams, keys and subscription from its events
//! on the topic up to an instant, and the tenants who must not read it.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use e2e::{aihub_binary, Api, Env, Tenant};
use serde_json::{json, Value};

/// When the organization's only event of `event_type` about `resource` occurred.
async fn occurred(auditor: &Api, event_type: &str, resource: &str) -> DateTime<Utc> {
    let page = auditor
        .get(&format!(
            "/api/v1/audit/logs?event_type={event_type}&resource={resource}"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let data = page.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{}", page.body);
    data[0]["occurred_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("occurred_at")
        .with_timezone(&Utc)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn state(api: &Api, at: DateTime<Utc>) -> Value {
    let reply = api
        .get(&format!("/api/v1/audit/state?as_of={}", rfc3339(at)))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn key<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["api_keys"]
        .as_array()
        .expect("api_keys")
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("key {id} not in {state}"))
}

fn roles(state: &Value, user: &str) -> Vec<String> {
    state["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["id"] == user)
        .unwrap_or_else(|| panic!("user {user} not in {state}"))["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["role"].as_str().expect("role").to_string())
        .collect()
}

/// `aihub replay --org --as-of --schema`: its exit status and its output.
async fn replay_binary(env: &Env, org: &str, at: &str, schema: &str) -> (bool, String) {
    let output = env
        .aihub_command(aihub_binary())
        .args(["replay", "--org", org, "--as-of", at, "--schema", schema])
        .output()
        .await
        .expect("aihub replay runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_before_and_after_a_revocation_and_a_role_change_differs_and_the_cli_writes_it() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "audit-state", "pro").await;
    let (_, auditor_key) = tenant.member_with_role(&admin, "auditor").await;
    let auditor = admin.with_token(&auditor_key);
    let (member, _) = tenant.member_with_role(&admin, "developer").await;
    let team = tenant
        .owner
        .post("/api/v1/teams", &json!({"name": "Research"}))
        .await;
    assert_eq!(team.status, 201, "{}", team.body);
    let team_id = team.body["id"].as_str().expect("team").to_string();
    let added = tenant
        .owner
        .post(
            &format!("/api/v1/teams/{team_id}/members"),
            &json!({"user_id": member}),
        )
        .await;
    assert!(added.status < 300, "{}", added.body);
    let created = admin
        .post(
            "/api/v1/api-keys",
            &json!({"org_id": tenant.org_id, "user_id": member, "name": "to revoke",
                    "permissions": ["chat:write", "models:read"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key_id = created.body["id"].as_str().expect("key id").to_string();
    env.wait_until_projected(Duration::from_secs(60)).await;

    // The key is revoked, then the member's role changes from developer to viewer.
    let revoked = tenant
        .owner
        .delete(&format!("/api/v1/api-keys/{key_id}"))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    env.wait_until_projected(Duration::from_secs(60)).await;
    let removed = tenant
        .owner
        .delete(&format!("/api/v1/users/{member}/roles/developer"))
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    env.wait_until_projected(Duration::from_secs(60)).await;
    let assigned = tenant
        .owner
        .post(
            &format!("/api/v1/users/{member}/roles"),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    env.wait_until_projected(Duration::from_secs(60)).await;

    let revoked_at = occurred(&auditor, "api_key.revoked", &format!("api_key:{key_id}")).await;
    let role_removed = occurred(&auditor, "user.role_removed", &format!("user:{member}")).await;
    let assigned_events = auditor
        .get(&format!(
            "/api/v1/audit/logs?event_type=user.role_assigned&resource=user:{member}"
        ))
        .await;
    assert_eq!(assigned_events.status, 200, "{}", assigned_events.body);
    // The newest first: the viewer role, after the developer role it replaced.
    let role_assigned = assigned_events.body["data"][0]["occurred_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("occurred_at")
        .with_timezone(&Utc);
    assert!(revoked_at < role_removed && role_removed < role_assigned);
    let ms = chrono::Duration::milliseconds(1);

    // Right before the revocation: the key is active, the member a developer.
    let before = state(&auditor, revoked_at - ms).await;
    assert_eq!(before["object"], "audit.state");
    assert_eq!(before["org_id"], tenant.org_id.as_str());
    assert_eq!(key(&before, &key_id)["status"], "active", "{before}");
    assert!(key(&before, &key_id)["revoked_at"].is_null());
    assert_eq!(
        key(&before, &key_id)["permissions"],
        json!(["chat:write", "models:read"])
    );
    assert_eq!(roles(&before, &member), vec!["developer"]);
    assert_eq!(before["organization"]["id"], tenant.org_id.as_str());
    assert_eq!(before["subscription"]["plan"], "pro");
    let research = before["teams"]
        .as_array()
        .expect("teams")
        .iter()
        .find(|t| t["id"] == team_id.as_str())
        .expect("the team");
    assert_eq!(research["members"][0]["user_id"], member.as_str());
    assert!(
        before.to_string().find("secret").is_none(),
        "no secret or hash of a key: {before}"
    );

    // Right after it: revoked; the role not yet changed.
    let after_revocation = state(&auditor, revoked_at).await;
    assert_eq!(key(&after_revocation, &key_id)["status"], "revoked");
    assert_eq!(roles(&after_revocation, &member), vec!["developer"]);

    // Right before the new role: none; right after it: viewer.
    let between = state(&auditor, role_assigned - ms).await;
    assert!(roles(&between, &member).is_empty(), "{between}");
    let after = state(&auditor, role_assigned).await;
    assert_eq!(roles(&after, &member), vec!["viewer"]);
    assert_eq!(key(&after, &key_id)["status"], "revoked");
    assert!(
        after["events_replayed"].as_u64() > before["events_replayed"].as_u64(),
        "{after}"
    );

    // Personal fields are opened with the persons' keys, as the live read models show them.
    let users = after["users"].as_array().expect("users");
    assert!(
        !users.is_empty()
            && users
                .iter()
                .all(|u| u["email"].as_str().is_some_and(|e| e.contains('@'))),
        "{after}"
    );

    // Before the organization existed: nothing.
    let created_at = DateTime::parse_from_rfc3339(
        before["organization"]["created_at"]
            .as_str()
            .expect("created_at"),
    )
    .expect("time")
    .with_timezone(&Utc);
    // One command, one instant: the owner created with the organization occurred with it, so no
    // point in time shows the owner without the organization.
    let owner = occurred(
        &auditor,
        "user.created",
        &format!("user:{}", tenant.owner_id),
    )
    .await;
    assert_eq!(owner, created_at);
    let empty = state(&auditor, created_at - ms).await;
    assert!(empty["organization"].is_null(), "{empty}");
    assert_eq!(empty["api_keys"], json!([]));
    assert_eq!(empty["users"], json!([]));

    // The answer does not come from the current tables: emptying them changes nothing.
    let db = env.db().await;
    db.batch_execute("TRUNCATE read.api_keys, read.role_assignments")
        .await
        .expect("truncate");
    let replayed = state(&auditor, revoked_at - ms).await;
    assert_eq!(replayed, before);

    // The CLI writes the same state into a schema, and its rows are the API's answer.
    let (ok, output) = replay_binary(
        &env,
        &tenant.org_id,
        &rfc3339(role_assigned),
        "audit_snapshot",
    )
    .await;
    assert!(ok, "{output}");
    assert!(output.contains("audit_snapshot"), "{output}");
    assert!(output.contains("events applied"), "{output}");
    let rows = db
        .query(
            "SELECT id::text, permissions, revoked_at IS NOT NULL AS revoked
             FROM audit_snapshot.api_keys ORDER BY id",
            &[],
        )
        .await
        .expect("snapshot keys");
    let from_sql: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.get::<_, String>(0), "permissions": r.get::<_, Vec<String>>(1),
                   "revoked": r.get::<_, bool>(2)})
        })
        .collect();
    let from_api: Vec<Value> = after["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            json!({"id": k["id"], "permissions": k["permissions"],
                   "revoked": k["status"] == "revoked"})
        })
        .collect();
    assert_eq!(from_sql, from_api);
    let rows = db
        .query(
            "SELECT user_id::text, role FROM audit_snapshot.role_assignments ORDER BY user_id, role",
            &[],
        )
        .await
        .expect("snapshot roles");
    let from_sql: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut from_api: Vec<(String, String)> = after["users"]
        .as_array()
        .expect("users")
        .iter()
        .flat_map(|u| {
            u["roles"].as_array().expect("roles").iter().map(|r| {
                (
                    u["id"].as_str().expect("id").to_string(),
                    r["role"].as_str().expect("role").to_string(),
                )
            })
        })
        .collect();
    from_api.sort();
    assert_eq!(from_sql, from_api);
    assert!(from_sql.contains(&(member.clone(), "viewer".to_string())));

    // Run again at an earlier instant: the schema is replaced, and the key is not revoked there.
    let (ok, output) = replay_binary(
        &env,
        &tenant.org_id,
        &rfc3339(revoked_at - ms),
        "audit_snapshot",
    )
    .await;
    assert!(ok, "{output}");
    assert!(
        output.contains("replacing schema audit_snapshot"),
        "{output}"
    );
    let revoked: bool = db
        .query_one(
            "SELECT revoked_at IS NOT NULL FROM audit_snapshot.api_keys WHERE id = $1::text::uuid",
            &[&key_id],
        )
        .await
        .expect("the key")
        .get(0);
    assert!(!revoked);

    // It does not replace a schema of someone else's, nor write into the platform's.
    db.batch_execute(
        "CREATE SCHEMA notes; CREATE TABLE notes.mine (x int); INSERT INTO notes.mine VALUES (1)",
    )
    .await
    .expect("a schema of someone else's");
    let (ok, output) = replay_binary(&env, &tenant.org_id, &rfc3339(revoked_at), "notes").await;
    assert!(!ok, "{output}");
    assert!(output.contains("mine"), "{output}");
    assert_eq!(env.count("SELECT count(*) FROM notes.mine").await, 1);
    for schema in ["public", "read", "Bad-Name"] {
        let (ok, output) = replay_binary(&env, &tenant.org_id, &rfc3339(revoked_at), schema).await;
        assert!(!ok, "{schema}: {output}");
    }
    let (ok, output) = replay_binary(&env, &tenant.org_id, "yesterday", "audit_snapshot").await;
    assert!(!ok && output.contains("RFC 3339"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_roles_other_organizations_and_bad_instants_are_refused() {
    let env = Env::new().await;
    let (_app, admin) = env.app().await;
    let a = Tenant::create(&admin, "audit-state-a").await;
    let b = Tenant::create(&admin, "audit-state-b").await;
    let now = rfc3339(Utc::now());

    for role in ["developer", "viewer"] {
        let (_, weak) = a.member_with_role(&admin, role).await;
        let reply = admin
            .with_token(&weak)
            .get(&format!("/api/v1/audit/state?as_of={now}"))
            .await;
        reply.assert_client_error(403);
    }

    // Another organization's id is 404, for every role of this one; a malformed one too.
    for org in [b.org_id.as_str(), "not-a-uuid"] {
        a.owner
            .get(&format!("/api/v1/audit/state?as_of={now}&org_id={org}"))
            .await
            .assert_client_error(404);
    }

    for bad in [
        "",
        "yesterday",
        "2026-11-27",
        "2026-13-01T00:00:00Z",
        "9999-01-01T00:00:00Z",
        "%00",
    ] {
        let reply = a
            .owner
            .get(&format!("/api/v1/audit/state?as_of={bad}"))
            .await;
        let error = reply.assert_client_error(400);
        assert_eq!(error["param"], "as_of", "{bad}: {}", reply.body);
    }
    let future = rfc3339(Utc::now() + chrono::Duration::minutes(10));
    let error = a
        .owner
        .get(&format!("/api/v1/audit/state?as_of={future}"))
        .await
        .assert_client_error(400)
        .clone();
    assert_eq!(error["param"], "as_of");
    a.owner
        .get("/api/v1/audit/state")
        .await
        .assert_client_error(400);

    // The platform admin names the organization; its answer is that organization's only.
    let reply = admin
        .get(&format!(
            "/api/v1/audit/state?as_of={now}&org_id={}",
            b.org_id
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["org_id"], b.org_id.as_str());
    assert_eq!(reply.body["organization"]["id"], b.org_id.as_str());
    let users = reply.body["users"].as_array().expect("users");
    assert!(users.iter().all(|u| u["id"] != a.owner_id.as_str()));
    assert!(users.iter().any(|u| u["id"] == b.owner_id.as_str()));
}
