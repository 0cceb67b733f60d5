//! Calling one deployment: sending the request its wire format (`wire/`) built, classifying the
//! answer, and reading its stream as server-sent events.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use platform::config::ProviderConfig;
use serde_json::Value;

use crate::sse::SseParser;
use crate::wire::{self, Auth, UpstreamRequest};

/// Why an attempt did not produce a response to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth trying the next deployment: connect error, timeout, 429, 5xx.
    Retryable {
        outcome: String,
        status: Option<u16>,
    },
    /// The provider refused the request itself (4xx): the client's problem, no failover.
    Rejected { status: u16, message: String },
}

/// Upstream URLs parsed so far. A provider's URLs are few (its base URL, and for Gemini one per
/// upstream model and method), and parsing one for every call (`reqwest` parses a `String`, IDNA
/// host checks included) was ~3 % of the request threads' CPU in the side-by-side bench (issue
/// 17, session 20); a parsed URL is cloned instead. Bounded: past `PARSED_URLS` entries (a
/// catalog changed many times over) the map starts again.
static URLS: LazyLock<RwLock<HashMap<String, reqwest::Url>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));
const PARSED_URLS: usize = 1_024;

fn parsed(url: &str) -> Option<reqwest::Url> {
    if let Some(parsed) = URLS.read().unwrap_or_else(|p| p.into_inner()).get(url) {
        return Some(parsed.clone());
    }
    let parsed = reqwest::Url::parse(url).ok()?;
    let mut urls = URLS.write().unwrap_or_else(|p| p.into_inner());
    if urls.len() >= PARSED_URLS {
        urls.clear();
    }
    urls.insert(url.to_owned(), parsed.clone());
    Some(parsed)
}

/// Sends the request in the provider's wire format and waits for the response headers, at most
/// `timeout`. A request the format cannot translate is the client's: rejected, no failover.
pub async fn send(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    upstream_model: &str,
    body: &Value,
    stream: bool,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    let UpstreamRequest { url, auth, body } = wire::of(provider)
        .request(provider, upstream_model, body, stream)
        .map_err(|e| Failure::Rejected {
            status: 400,
            message: e.message,
        })?;
    // A URL that does not parse goes to reqwest as it was, whose error says why.
    let request = match parsed(&url) {
        Some(url) => http.post(url),
        None => http.post(url),
    };
    let request = match auth {
        Auth::Bearer(key) => request.bearer_auth(key),
        Auth::Header(name, value) => request.header(name, value),
    }
    .json(&body);
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            return Err(Failure::Retryable {
                outcome: "timeout".into(),
                status: None,
            })
        }
        Ok(Err(e)) if e.is_timeout() => {
            return Err(Failure::Retryable {
                outcome: "timeout".into(),
                status: None,
            })
        }
        Ok(Err(_)) => {
            return Err(Failure::Retryable {
                outcome: "connect_error".into(),
                status: None,
            })
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(response);
    }
    // A redirect is not followed (`http_client`): it counts as this deployment failing.
    if status == 429 || status >= 500 || status == 408 || (300..400).contains(&status) {
        return Err(Failure::Retryable {
            outcome: format!("http_{status}"),
            status: Some(status),
        });
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("The provider refused the request with status {status}."));
    Err(Failure::Rejected { status, message })
}

/// Splits a byte stream into the `data:` payloads of server-sent events (`crate::sse`).
pub fn sse_data<S>(bytes: S) -> impl Stream<Item = Result<String, String>>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    futures::stream::unfold(
        (bytes, SseParser::default(), VecDeque::new(), false),
        |(mut bytes, mut parser, mut ready, mut done)| async move {
            loop {
                if let Some(data) = ready.pop_front() {
                    return Some((Ok(data), (bytes, parser, ready, done)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => ready.extend(parser.push(&chunk)),
                    Some(Err(e)) => {
                        done = true;
                        return Some((Err(e.to_string()), (bytes, parser, ready, done)));
                    }
                    None => {
                        done = true;
                        ready.extend(parser.finish());
                    }
                }
            }
        },
    )
}

/// The client every provider is called with (and `aihub models sync`): no redirects followed, TLS (rustls with the Mozilla roots, so no system
/// certificate store is needed, plus the PEM certificates of `ca_file`) and HTTP/2 by ALPN, so
/// many concurrent streams to one provider share a few connections.
pub fn http_client(ca_file: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // A provider's redirect is not followed: the request (with our provider key) goes to the
        // configured URL only, never where an answer points it.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        if certificates.is_empty() {
            anyhow::bail!("{path}: no PEM certificate in it");
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_parsed_once_and_the_same_url_comes_back() {
        let url = "http://127.0.0.1:9/v1/chat/completions?alt=sse";
        let first = parsed(url).expect("parses");
        assert_eq!(first.as_str(), url);
        assert!(URLS.read().expect("lock").contains_key(url));
        assert_eq!(parsed(url), Some(first));
        assert_eq!(parsed("not a url"), None);
        assert!(!URLS.read().expect("lock").contains_key("not a url"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let file = std::env::temp_dir().join(format!("aihub-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not a certificate").expect("write");
        let error = http_client(file.to_str()).expect_err("refused");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        assert!(http_client(Some("/nonexistent/ca.pem")).is_err());
    }

    /// The providers' default base URLs are https: the client must open them with a TLS
    /// handshake (a ClientHello record starts with byte 0x16) offering HTTP/2 by ALPN.
    #[tokio::test]
    async fn the_client_speaks_https_and_offers_http2() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = http_client(None).expect("client");
        let request = tokio::spawn(async move {
            client
                .get(format!("https://127.0.0.1:{port}/"))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
        });
        let (mut socket, _) =
            tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept())
                .await
                .unwrap_or_else(|_| panic!("no connection: {:?}", request.is_finished()))
                .expect("the client connects");
        let mut hello = vec![0u8; 2048];
        let read = socket.read(&mut hello).await.expect("reads");
        assert_eq!(
            hello.first(),
            Some(&0x16),
            "not a TLS handshake: {:?}",
            String::from_utf8_lossy(&hello[..read])
        );
        assert!(
            hello[..read].windows(2).any(|w| w == b"h2"),
            "the ClientHello does not offer h2"
        );
        drop(socket);
        assert!(request.await.expect("joins").is_err());
    }

    #[tokio::test]
    async fn sse_events_split_across_reads_and_crlf_are_parsed() {
        let parts: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"data: {\"a\":1}\r\n\r\nda")),
            Ok(Bytes::from_static(
                b"ta: {\"b\":2}\n\n: comment\n\ndata: [DONE]\n\n",
            )),
        ];
        let events: Vec<_> = sse_data(futures::stream::iter(parts)).collect().await;
        assert_eq!(
            events,
            vec![
                Ok("{\"a\":1}".to_string()),
                Ok("{\"b\":2}".to_string()),
                Ok("[DONE]".to_string())
            ]
        );
    }
}
