//! Privilege escalation, tried as a hostile member would (issue 13, items 1 and 5): nobody grants
//! a role holding permissions they lack, only an owner changes owners, a role held in a team
//! administers that team only, and a developer manages its own keys only, never re-enabling one
//! or lifting its expiry.

use e2e::{all_permissions, unique_slug, Api, Env, Tenant};
use serde_json::{json, Value};

async fn new_user(admin: &Api, tenant: &Tenant) -> String {
    let user = admin
        .post(
            "/api/v1/users",
            &json!({"org_id": tenant.org_id, "email": format!("{}@esc.example", unique_slug("u"))}),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.body);
    user.body["id"].as_str().expect("id").to_string()
}

/// A key of `user` with `permissions`, in `team` when given, made by the platform admin.
async fn key_of(
    admin: &Api,
    tenant: &Tenant,
    user: &str,
    team: Option<&str>,
    permissions: &[String],
) -> (String, Api) {
    let reply = admin
        .post(
            "/api/v1/api-keys",
            &json!({"org_id": tenant.org_id, "user_id": user, "team_id": team,
                    "name": "escalation", "permissions": permissions}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_string();
    (
        id,
        admin.with_token(reply.body["key"].as_str().expect("key")),
    )
}

fn code(reply: &e2e::Reply, status: u16) -> String {
    reply.assert_client_error(status)["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn team(admin: &Api, tenant: &Tenant, name: &str) -> String {
    let reply = admin
        .post(
            "/api/v1/teams",
            &json!({"org_id": tenant.org_id, "name": name}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_make_itself_owner_nor_grant_more_than_it_holds() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "esc-owner", "pro").await;
    let (admin_user, admin_key) = tenant.member_with_role(&admin, "admin").await;
    let org_admin = admin.with_token(&admin_key);

    // Make itself owner, or take the real owner's role away: refused.
    let grab = org_admin
        .post(
            &format!("/api/v1/users/{admin_user}/roles"),
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(code(&grab, 403), "owner_required");
    let depose = org_admin
        .delete(&format!("/api/v1/users/{}/roles/owner", tenant.owner_id))
        .await;
    assert_eq!(code(&depose, 403), "owner_required");
    let users = tenant
        .owner
        .get(&format!("/api/v1/organizations/{}", tenant.org_id))
        .await;
    assert_eq!(users.status, 200);

    // Roles within what an admin holds: allowed.
    let someone = new_user(&admin, &tenant).await;
    for role in ["admin", "auditor", "developer"] {
        let granted = org_admin
            .post(
                &format!("/api/v1/users/{someone}/roles"),
                &json!({"role": role}),
            )
            .await;
        assert_eq!(granted.status, 200, "{role}: {}", granted.body);
    }

    // A key of the same admin narrowed to roles:assign cannot hand on what it does not hold.
    let (_, narrow) = key_of(
        &admin,
        &tenant,
        &admin_user,
        None,
        &["roles:assign".into(), "users:read".into()],
    )
    .await;
    let other = new_user(&admin, &tenant).await;
    let beyond = narrow
        .post(
            &format!("/api/v1/users/{other}/roles"),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(code(&beyond, 403), "role_exceeds_caller");
    assert!(beyond.body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("organizations:read")));
    let taken = narrow
        .delete(&format!("/api/v1/users/{someone}/roles/auditor"))
        .await;
    assert_eq!(code(&taken, 403), "role_exceeds_caller", "nor take it away");

    // The owner changes owners.
    let crowned = tenant
        .owner
        .post(
            &format!("/api/v1/users/{someone}/roles"),
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(crowned.status, 200, "{}", crowned.body);
    let uncrowned = tenant
        .owner
        .delete(&format!("/api/v1/users/{someone}/roles/owner"))
        .await;
    assert_eq!(uncrowned.status, 200, "{}", uncrowned.body);
    let roles = admin.get(&format!("/api/v1/users/{admin_user}")).await;
    assert!(
        !roles.body.to_string().contains("\"owner\""),
        "the admin is not an owner: {}",
        roles.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_held_in_a_team_administers_that_team_only() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "esc-team", "pro").await;
    let (alpha, beta) = (
        team(&admin, &tenant, "Alpha").await,
        team(&admin, &tenant, "Beta").await,
    );
    let lead = new_user(&admin, &tenant).await;
    let assigned = tenant
        .owner
        .post(
            &format!("/api/v1/users/{lead}/roles"),
            &json!({"role": "admin", "team_id": alpha}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let (_, lead_key) = key_of(&admin, &tenant, &lead, Some(&alpha), &all_permissions()).await;
    let member = new_user(&admin, &tenant).await;

    // Organization-wide administration: refused.
    let org_wide = lead_key
        .post(
            &format!("/api/v1/users/{member}/roles"),
            &json!({"role": "developer"}),
        )
        .await;
    assert_eq!(code(&org_wide, 403), "missing_permission");
    let new_key = lead_key
        .post(
            "/api/v1/api-keys",
            &json!({"name": "org-wide", "permissions": ["chat:write"]}),
        )
        .await;
    assert_eq!(code(&new_key, 403), "missing_permission");
    let new_team = lead_key
        .post("/api/v1/teams", &json!({"name": "Gamma"}))
        .await;
    assert_eq!(code(&new_team, 403), "missing_permission");
    // Another team: refused.
    for reply in [
        lead_key
            .post(
                &format!("/api/v1/users/{member}/roles"),
                &json!({"role": "developer", "team_id": beta}),
            )
            .await,
        lead_key
            .post(
                &format!("/api/v1/teams/{beta}/members"),
                &json!({"user_id": member}),
            )
            .await,
        lead_key
            .put(
                &format!("/api/v1/teams/{beta}"),
                &json!({"description": "taken over"}),
            )
            .await,
    ] {
        assert_eq!(code(&reply, 403), "missing_permission", "{}", reply.body);
    }
    // Its own team: allowed.
    let added = lead_key
        .post(
            &format!("/api/v1/teams/{alpha}/members"),
            &json!({"user_id": member}),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let role = lead_key
        .post(
            &format!("/api/v1/users/{member}/roles"),
            &json!({"role": "developer", "team_id": alpha}),
        )
        .await;
    assert_eq!(role.status, 200, "{}", role.body);
    let team_key = lead_key
        .post(
            "/api/v1/api-keys",
            &json!({"name": "alpha", "team_id": alpha, "permissions": ["chat:write"]}),
        )
        .await;
    assert_eq!(team_key.status, 201, "{}", team_key.body);
    // What reaches no further than its own work still works: reading teams, calling models.
    assert_eq!(lead_key.get("/api/v1/teams").await.status, 200);
    let chat = lead_key
        .post(
            "/api/v1/chat/completions",
            &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(
        code(&chat, 404),
        "model_not_found",
        "past the permission check"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_manages_its_own_keys_only_and_cannot_undo_an_admins_limits() {
    let env = Env::new().await;
    let (app, admin) = env.app().await;
    let tenant = Tenant::create_on(&admin, "esc-keys", "pro").await;
    let (_, developer_key) = tenant.member_with_role(&admin, "developer").await;
    let developer = admin.with_token(&developer_key);
    let (_, admin_key) = tenant.member_with_role(&admin, "admin").await;
    let org_admin = admin.with_token(&admin_key);

    // The owner's key, and a key of no user: out of a developer's reach.
    let owners = tenant.owner.get("/api/v1/api-keys").await;
    let owner_key_id = owners.body["data"]
        .as_array()
        .and_then(|keys| keys.first())
        .and_then(|k| k["id"].as_str())
        .expect("the owner's key")
        .to_string();
    for reply in [
        developer
            .put(
                &format!("/api/v1/api-keys/{owner_key_id}"),
                &json!({"enabled": false}),
            )
            .await,
        developer
            .put(
                &format!("/api/v1/api-keys/{owner_key_id}/permissions"),
                &json!({"permissions": ["models:read"]}),
            )
            .await,
        developer
            .delete(&format!("/api/v1/api-keys/{owner_key_id}"))
            .await,
    ] {
        let error = reply.assert_client_error(403);
        assert_eq!(error["code"], "missing_permission", "{}", reply.body);
        assert_eq!(error["param"], "api_keys:manage");
    }
    let still = tenant
        .owner
        .get(&format!("/api/v1/api-keys/{owner_key_id}"))
        .await;
    assert_eq!(still.body["status"], "active", "{}", still.body);

    // Its own key: rename, disable, shorten; but not re-enable nor lift the expiry.
    let created = developer
        .post(
            "/api/v1/api-keys",
            &json!({"name": "mine", "permissions": ["chat:write"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mine = created.body["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/api-keys/{mine}");
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for change in [
        json!({"name": "renamed"}),
        json!({"expires_at": soon}),
        json!({"enabled": false}),
    ] {
        let reply = developer.put(&path, &change).await;
        assert_eq!(reply.status, 200, "{change}: {}", reply.body);
    }
    for (change, param) in [
        (json!({"enabled": true}), "enabled"),
        (json!({"expires_at": null}), "expires_at"),
        (json!({"expires_at": later}), "expires_at"),
    ] {
        let reply = developer.put(&path, &change).await;
        let error = reply.assert_client_error(403);
        assert_eq!(error["param"], param, "{change}: {}", reply.body);
    }
    let key: Value = developer.get(&path).await.body;
    assert_eq!(key["status"], "disabled", "{key}");
    // An admin may.
    let reenabled = org_admin
        .put(&path, &json!({"enabled": true, "expires_at": later}))
        .await;
    assert_eq!(reenabled.status, 200, "{}", reenabled.body);
    assert_eq!(reenabled.body["status"], "active");
    // And the developer may still revoke its own key.
    assert_eq!(developer.delete(&path).await.status, 200);
    app.stop().await;
}

/// Issue 13, item 12: several named platform-admin tokens; the events say which admin acted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_admin_tokens_are_named_in_the_events_they_cause() {
    let mut env = Env::new().await;
    env.config.admin_tokens = Some(platform::config::NamedTokens(vec![(
        "alice".into(),
        "alice-admin-token-0123456789".into(),
    )]));
    let (app, admin) = env.app().await;
    let alice = admin.with_token("alice-admin-token-0123456789");
    let slug = unique_slug("named");
    let created = alice
        .post(
            "/api/v1/organizations",
            &json!({"name": slug, "slug": slug, "owner_email": format!("o@{slug}.example")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let by_legacy = Tenant::create(&admin, "named-legacy").await;
    let db = env.db().await;
    let actor = |org: String| {
        let db = &db;
        async move {
            let org = uuid::Uuid::parse_str(&org).expect("org id");
            db.query_one(
                "SELECT envelope->'actor'->>'id' FROM journal WHERE event_type = 'organization.created' AND org_id = $1",
                &[&org],
            )
            .await
            .expect("event")
            .get::<_, String>(0)
        }
    };
    assert_eq!(
        actor(created.body["id"].as_str().expect("id").to_string()).await,
        "platform-admin:alice"
    );
    assert_eq!(
        actor(by_legacy.org_id.clone()).await,
        "platform-admin:admin"
    );
    alice
        .with_token("alice-admin-token-012345678")
        .get("/api/v1/organizations")
        .await
        .assert_client_error(401);
    app.stop().await;
}
