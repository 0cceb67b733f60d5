//! Bad input gets a 4xx in the OpenAI error shape, never a 500, and changes nothing.

use e2e::{unique_slug, Env};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_in_the_openai_error_shape_and_writes_nothing() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let id = api.create_org(&unique_slug("valid")).await;
    // Refused authentications are recorded on purpose (auth.failed); nothing else may be.
    let journal_before = env
        .count("SELECT count(*) FROM journal WHERE event_type <> 'auth.failed'")
        .await;
    let post = |body: reqwest::Body| {
        api.request(reqwest::Method::POST, "/api/v1/organizations")
            .header("content-type", "application/json")
            .body(body)
    };

    let malformed = api.send(post("{\"name\": ".into())).await;
    assert_eq!(malformed.assert_client_error(400)["code"], "invalid_json");

    let missing_name = api
        .post("/api/v1/organizations", &json!({"slug": unique_slug("x")}))
        .await;
    assert_eq!(missing_name.assert_client_error(400)["param"], "name");

    let wrong_type = api
        .post(
            "/api/v1/organizations",
            &json!({"name": 42, "slug": unique_slug("x")}),
        )
        .await;
    wrong_type.assert_client_error(400);

    let spaced = api
        .post(
            "/api/v1/organizations",
            &json!({"name": "Spaces", "slug": "has spaces"}),
        )
        .await;
    assert_eq!(spaced.assert_client_error(400)["param"], "slug");

    let blank = api
        .post(
            "/api/v1/organizations",
            &json!({"name": "   ", "slug": unique_slug("x")}),
        )
        .await;
    assert_eq!(blank.assert_client_error(400)["param"], "name");

    let email = api
        .post(
            "/api/v1/organizations",
            &json!({"name": "E", "slug": unique_slug("x"), "owner_email": "nope"}),
        )
        .await;
    assert_eq!(email.assert_client_error(400)["param"], "owner_email");

    let not_json = api
        .send(
            api.request(reqwest::Method::POST, "/api/v1/organizations")
                .body("name=x"),
        )
        .await;
    not_json.assert_client_error(400);

    let huge = format!(
        "{{\"name\": \"{}\", \"slug\": \"big\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let too_large = api.send(post(huge.into())).await;
    too_large.assert_client_error(413);

    let unknown = uuid::Uuid::now_v7();
    api.get(&format!("/api/v1/organizations/{unknown}"))
        .await
        .assert_client_error(404);
    api.put(
        &format!("/api/v1/organizations/{unknown}"),
        &json!({"name": "x"}),
    )
    .await
    .assert_client_error(404);
    api.delete(&format!("/api/v1/organizations/{unknown}"))
        .await
        .assert_client_error(404);
    api.get("/api/v1/organizations/not-a-uuid")
        .await
        .assert_client_error(404);

    let bad_if_match = api
        .send(
            api.request(reqwest::Method::PUT, &format!("/api/v1/organizations/{id}"))
                .header("if-match", "yesterday")
                .json(&json!({"name": "x"})),
        )
        .await;
    bad_if_match.assert_client_error(400);
    api.put(
        &format!("/api/v1/organizations/{id}"),
        &json!({"slug": "UPPER"}),
    )
    .await
    .assert_client_error(400);

    api.get("/api/v1/organizations?limit=0")
        .await
        .assert_client_error(400);
    api.get("/api/v1/organizations?limit=abc")
        .await
        .assert_client_error(400);
    api.get("/api/v1/organizations?cursor=!!!")
        .await
        .assert_client_error(400);
    api.get("/api/v1/no-such-endpoint")
        .await
        .assert_client_error(404);
    let patch = api
        .send(api.request(reqwest::Method::PATCH, "/api/v1/organizations"))
        .await;
    patch.assert_client_error(405);

    // Authentication: no token, a wrong token, a malformed header.
    let anonymous = api
        .send(api.http.get(api.url("/api/v1/organizations")))
        .await;
    assert_eq!(
        anonymous.assert_client_error(401)["type"],
        "authentication_error"
    );
    api.send(
        api.http
            .get(api.url("/api/v1/organizations"))
            .bearer_auth("wrong"),
    )
    .await
    .assert_client_error(401);
    api.send(
        api.http
            .get(api.url("/api/v1/organizations"))
            .header("authorization", "Basic abc"),
    )
    .await
    .assert_client_error(401);
    api.send(
        api.http
            .post(api.url("/api/v1/organizations"))
            .json(&json!({"name": "n", "slug": unique_slug("anon")})),
    )
    .await
    .assert_client_error(401);

    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE event_type <> 'auth.failed'")
            .await,
        journal_before,
        "bad input wrote an event"
    );
    app.stop().await;
}

/// A NUL character in any text field is refused with 400 naming the field (PostgreSQL cannot
/// store it; schemathesis found the 500 it gave), and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_text_is_refused_naming_the_field() {
    let env = Env::new().await;
    let (app, api) = env.app().await;
    let tenant = e2e::Tenant::create_on(&api, "nul", "pro").await;
    let before = env.count("SELECT count(*) FROM journal").await;
    for (path, body, field) in [
        (
            "/api/v1/teams",
            r#"{"name": "Team", "description": "\f\u0000x"}"#,
            "description",
        ),
        ("/api/v1/teams", r#"{"name": "a\u0000b"}"#, "name"),
        (
            "/api/v1/api-keys",
            r#"{"name": "k\u0000", "permissions": []}"#,
            "name",
        ),
    ] {
        let reply = tenant
            .owner
            .send(
                tenant
                    .owner
                    .request(reqwest::Method::POST, path)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        let error = reply.assert_client_error(400);
        assert_eq!(error["param"], field, "{body}: {}", reply.body);
    }
    // An escaped backslash before u0000 is text, not a NUL: accepted.
    let fine = tenant
        .owner
        .send(
            tenant
                .owner
                .request(reqwest::Method::POST, "/api/v1/teams")
                .header("content-type", "application/json")
                .body(r#"{"name": "Team", "description": "a \\u0000 b"}"#),
        )
        .await;
    assert_eq!(fine.status, 201, "{}", fine.body);
    assert_eq!(env.count("SELECT count(*) FROM journal").await, before + 1);
    app.stop().await;
}
