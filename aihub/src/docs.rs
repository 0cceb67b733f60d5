//! The API portal at `/docs`: Swagger UI rendering this server's `/openapi.json`, with try-it-out
//! and a bearer token that survives a reload. Swagger UI is taken from the npm registry at build
//! time (build.rs) and served from the binary, so the page fetches nothing from elsewhere.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use platform::ApiError;

/// The pinned `swagger-ui-dist` version (build.rs).
pub const SWAGGER_UI_VERSION: &str = env!("SWAGGER_UI_VERSION");

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! swagger_ui {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

static ASSETS: &[Asset] = &[
    swagger_ui!("swagger-ui-bundle.js", JS),
    swagger_ui!("swagger-ui.css", "text/css; charset=utf-8"),
    swagger_ui!("favicon-32x32.png", "image/png"),
    swagger_ui!("favicon-16x16.png", "image/png"),
    // Swagger UI's licence and the notices of what its bundle contains travel with it.
    swagger_ui!("LICENSE", TEXT),
    swagger_ui!("NOTICE", TEXT),
    swagger_ui!("swagger-ui-bundle.js.LICENSE.txt", TEXT),
    Asset {
        name: "init.js",
        content_type: JS,
        bytes: include_bytes!("docs/init.js"),
    },
];

/// Asset URLs carry the Swagger UI version, so a browser may keep them for good.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

static PAGE: LazyLock<String> =
    LazyLock::new(|| include_str!("docs/index.html").replace("{{version}}", SWAGGER_UI_VERSION));

/// `/docs` and `/docs/assets/{file}`; merged into the top-level router beside `/openapi.json`.
pub fn router() -> Router {
    Router::new()
        .route("/docs", get(page))
        // The page's URLs are relative to `/docs`; from `/docs/` they would miss.
        .route("/docs/", get(|| async { Redirect::permanent("../docs") }))
        .route("/docs/assets/{file}", get(asset))
}

async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => (
            [
                (CONTENT_TYPE, asset.content_type),
                (CACHE_CONTROL, ASSET_CACHE),
                (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => ApiError::not_found(format!("No docs asset {file:?}.")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_loads_every_asset_it_names_from_the_binary() {
        let page = get("/docs").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let html = String::from_utf8(
            axum::body::to_bytes(page.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"));
        let referenced: Vec<&str> = html
            .split("docs/assets/")
            .skip(1)
            .map(|rest| rest.split(['?', '"']).next().unwrap())
            .collect();
        assert!(referenced.contains(&"swagger-ui-bundle.js"), "{html}");
        for name in referenced {
            let asset = get(&format!("/docs/assets/{name}")).await;
            assert_eq!(asset.status(), StatusCode::OK, "{name}");
            assert_eq!(asset.headers()[CACHE_CONTROL], ASSET_CACHE);
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_types_and_unknown_ones_are_404() {
        let js = get("/docs/assets/swagger-ui-bundle.js").await;
        assert_eq!(js.headers()[CONTENT_TYPE], JS);
        let css = get("/docs/assets/swagger-ui.css").await;
        assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(
            get("/docs/assets/LICENSE").await.headers()[CONTENT_TYPE],
            TEXT
        );
        assert_eq!(
            get("/docs/assets/../Cargo.toml").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/docs/assets/nothing.js").await.status(),
            StatusCode::NOT_FOUND
        );
        let slash = get("/docs/").await;
        assert_eq!(slash.status(), StatusCode::PERMANENT_REDIRECT);
    }
}
