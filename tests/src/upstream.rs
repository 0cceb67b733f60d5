//! Local stand-ins for the upstream model providers (the tests have no internet).
//!
//! One [`Upstream`] is an HTTP server on a free local port that speaks two public wire formats:
//!
//! * OpenAI / OpenRouter chat completions under [`Upstream::openai_base_url`]
//!   (`POST /api/v1/chat/completions`, streaming or not, and `GET /api/v1/models`);
//! * the Google Gemini native API under [`Upstream::gemini_base_url`]
//!   (`POST /v1beta/models/{model}:generateContent`, `…:streamGenerateContent[?alt=sse]`,
//!   and `GET /v1beta/models`).
//!
//! Answers are deterministic: the text is `"Hello from <provider> <model>!"`, streamed one word
//! per chunk, and token counts are counts of whitespace-separated words. Tests steer the next
//! requests with [`Upstream::push`] (errors, slow first bytes, dropped connections) and inspect
//! what the gateway sent with [`Upstream::requests`].

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The pause between two streamed chunks, so that streaming is observable by the client.
const CHUNK_GAP: Duration = Duration::from_millis(5);

/// The largest request body the server reads.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// The normal answer.
    Ok,
    /// This HTTP status with the provider's error JSON body (429 also sets `retry-after: 1`).
    Status(u16),
    /// Waits this long before sending the response headers, then answers normally.
    DelayFirstByte(Duration),
    /// Streaming: sends this many chunks, then aborts the connection (no `[DONE]`, no final
    /// chunk). Non-streaming: closes the connection without any response.
    DropAfterChunks(usize),
    /// Answers `text` instead of the usual greeting, one character per chunk; a stream's events
    /// end their lines in `\r\n` when `crlf`, and the body is written one byte at a time, so every
    /// character and every line ending is split across network writes.
    Say { text: String, crlf: bool },
    /// Streaming: sends this many chunks, then keeps the connection open and sends nothing more.
    StallAfterChunks(usize),
    /// `307 Temporary Redirect` to this URL (which a gateway must not follow).
    Redirect(String),
    /// This HTTP status with an error whose message is this text (a provider's own words).
    StatusSaying(u16, String),
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    /// The raw query string, empty when there is none.
    pub query: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Null` when empty, a JSON string holding the text when not JSON.
    pub body: Value,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

#[derive(Default)]
struct Shared {
    behaviors: Mutex<VecDeque<Behavior>>,
    requests: Mutex<Vec<Recorded>>,
    /// The body of `GET /api/v1/models` when set; the built-in list otherwise.
    models: Mutex<Option<String>>,
}

impl Shared {
    fn next_behavior(&self) -> Behavior {
        self.behaviors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or(Behavior::Ok)
    }

    fn record(&self, recorded: Recorded) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }
}

/// A running fake provider; stops accepting connections when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    /// `https` when started with [`Upstream::start_tls`].
    scheme: &'static str,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let app = router(shared.clone()).into_make_service_with_connect_info::<Link>();
        let server = tokio::spawn(async move {
            // Serving only ends when the task is aborted; an I/O error here has nobody to tell.
            let _ = axum::serve(KillableListener(listener), app).await;
        });
        Upstream {
            addr,
            shared,
            server,
            scheme: "http",
        }
    }

    /// Like [`Upstream::start`], over TLS with HTTP/2 or HTTP/1.1 by ALPN, with a certificate of
    /// a private CA whose PEM file is returned (for `AIHUB_UPSTREAM_CA_FILE`). Dropped
    /// connections ([`Behavior`]s that kill one) are not supported over TLS.
    pub async fn start_tls() -> (Upstream, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let files = crate::tls::private_ca();
        let acceptor = crate::tls::acceptor(&files.cert, &files.key);
        let server = tokio::spawn(crate::tls::serve(
            listener,
            acceptor,
            router(shared.clone()),
            |app| {
                app.layer(Extension(ConnectInfo(Link {
                    killed: Arc::new(AtomicBool::new(false)),
                })))
            },
        ));
        let upstream = Upstream {
            addr,
            shared,
            server,
            scheme: "https",
        };
        (upstream, files.ca)
    }

    /// The OpenRouter-style base URL: `http://127.0.0.1:PORT/api/v1` (`https` over TLS).
    pub fn openai_base_url(&self) -> String {
        format!("{}://{}/api/v1", self.scheme, self.addr)
    }

    /// The Gemini-style base URL: `http://127.0.0.1:PORT` (`https` over TLS).
    pub fn gemini_base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Queues a behavior for the next request not yet steered (first in, first out); with an
    /// empty queue a request gets [`Behavior::Ok`].
    pub fn push(&self, behavior: Behavior) {
        self.shared
            .behaviors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(behavior);
    }

    /// Serves `list` (OpenRouter's `{"data": [...]}`) from `GET /api/v1/models` from now on.
    pub fn serve_models(&self, list: &Value) {
        self.serve_models_text(&list.to_string());
    }

    /// Serves this body, JSON or not, from `GET /api/v1/models` from now on.
    pub fn serve_models_text(&self, body: &str) {
        *self
            .shared
            .models
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(body.to_string());
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Connections that a handler can kill, so that a request can end with no response at all.

struct KillableListener(TcpListener);

struct KillableIo {
    stream: TcpStream,
    killed: Arc<AtomicBool>,
}

/// Per-connection handle given to handlers: killing it makes every later write on the
/// connection fail, so hyper drops the connection instead of answering.
#[derive(Clone)]
struct Link {
    killed: Arc<AtomicBool>,
}

impl Link {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    // Small chunks go out at once rather than waiting for more data.
                    let _ = stream.set_nodelay(true);
                    let io = KillableIo {
                        stream,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, peer);
                }
                // Typically too many open files: wait for some to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Link {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        Link {
            killed: stream.io().killed.clone(),
        }
    }
}

impl KillableIo {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the fake upstream drops this connection",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Routing, recording and behaviors.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Gemini,
}

impl Provider {
    fn of_path(path: &str) -> Provider {
        if path.starts_with("/v1beta") {
            Provider::Gemini
        } else {
            Provider::OpenAi
        }
    }
}

/// What the recording layer hands to the handlers.
#[derive(Clone)]
struct Arrived {
    body: Value,
    query: String,
    /// `Some(n)` when the behavior is [`Behavior::DropAfterChunks`] on a streaming request.
    drop_after: Option<usize>,
    /// The text and line ending of [`Behavior::Say`].
    say: Option<(String, bool)>,
    /// `Some(n)` under [`Behavior::StallAfterChunks`].
    stall_after: Option<usize>,
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/chat/completions", post(openai_chat))
        .route("/api/v1/models", get(openai_models))
        .route("/v1beta/models", get(gemini_models))
        .route("/v1beta/models/{model_action}", post(gemini_generate))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), intercept))
        .with_state(shared)
}

/// Records every request, then applies the behavior queued for it.
async fn intercept(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(link): ConnectInfo<Link>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let provider = Provider::of_path(parts.uri.path());
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return error(provider, 400, "the request body could not be read");
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    shared.record(Recorded {
        version: format!("{:?}", parts.version),
        path: path.clone(),
        query: query.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });

    let streaming = match provider {
        Provider::OpenAi => body["stream"].as_bool() == Some(true),
        Provider::Gemini => path.ends_with(":streamGenerateContent"),
    };
    let mut drop_after = None;
    let mut say = None;
    let mut stall_after = None;
    match shared.next_behavior() {
        Behavior::Ok => {}
        Behavior::DelayFirstByte(delay) => tokio::time::sleep(delay).await,
        Behavior::Status(status) => {
            return error(
                provider,
                status,
                &format!("the fake upstream was told to answer {status}"),
            )
        }
        Behavior::DropAfterChunks(_) if !streaming => {
            link.kill();
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Behavior::DropAfterChunks(chunks) => drop_after = Some(chunks),
        Behavior::Say { text, crlf } => say = Some((text, crlf)),
        Behavior::StallAfterChunks(chunks) => stall_after = Some(chunks),
        Behavior::Redirect(url) => {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, url)],
            )
                .into_response()
        }
        Behavior::StatusSaying(status, message) => return error(provider, status, &message),
    }

    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(Arrived {
        body,
        query,
        drop_after,
        say,
        stall_after,
    });
    next.run(request).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        Provider::of_path(uri.path()),
        404,
        &format!("no route for {}", uri.path()),
    )
}

/// The provider's error JSON with this status.
fn error(provider: Provider, status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match provider {
        Provider::OpenAi => json!({"error": {"message": message, "code": code.as_u16()}}),
        Provider::Gemini => json!({"error": {
            "code": code.as_u16(),
            "message": message,
            "status": gemini_status(code.as_u16()),
        }}),
    };
    let mut response = (code, Json(body)).into_response();
    if code == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The `google.rpc.Code` name Google's APIs pair with an HTTP status.
fn gemini_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic content.

fn answer(provider: Provider, model: &str) -> String {
    let name = match provider {
        Provider::OpenAi => "openai",
        Provider::Gemini => "gemini",
    };
    format!("Hello from {name} {model}!")
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The answer cut into word chunks that concatenate back to it: `"Hello"`, `" from"`, …
fn word_chunks(text: &str) -> Vec<String> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, word)| {
            if i == 0 {
                word.to_string()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The text of an answer and its chunks: the greeting in words, or what [`Behavior::Say`] says,
/// one character at a time.
fn content(arrived: &Arrived, provider: Provider, model: &str) -> (String, Vec<String>) {
    match &arrived.say {
        Some((text, _)) => (text.clone(), text.chars().map(String::from).collect()),
        None => {
            let text = answer(provider, model);
            let chunks = word_chunks(&text);
            (text, chunks)
        }
    }
}

/// The body of a stream's events: paced pieces, or under [`Behavior::Say`] single bytes with
/// the line endings it asks for.
fn events_body(arrived: &Arrived, pieces: Vec<String>) -> Body {
    if let Some(chunks) = arrived.stall_after {
        let sent: Vec<Result<Bytes, io::Error>> = pieces
            .into_iter()
            .take(chunks)
            .map(|p| Ok(Bytes::from(p)))
            .collect();
        return Body::from_stream(futures::stream::iter(sent).chain(futures::stream::pending()));
    }
    let Some((_, crlf)) = &arrived.say else {
        return paced_body(pieces, arrived.drop_after);
    };
    let joined = pieces.concat().replace("\r\n", "\n");
    let joined = if *crlf {
        joined.replace('\n', "\r\n")
    } else {
        joined
    };
    let bytes: Vec<Result<Bytes, io::Error>> = joined
        .into_bytes()
        .into_iter()
        .map(|b| Ok(Bytes::from(vec![b])))
        .collect();
    Body::from_stream(futures::stream::iter(bytes))
}

/// A streamed body of these pieces, paced by [`CHUNK_GAP`]; with `drop_after`, only the first
/// pieces are sent and the body then fails, which makes hyper abort the connection.
fn paced_body(pieces: Vec<String>, drop_after: Option<usize>) -> Body {
    let mut items: Vec<Result<Bytes, io::Error>> =
        pieces.into_iter().map(|p| Ok(Bytes::from(p))).collect();
    if let Some(chunks) = drop_after {
        items.truncate(chunks);
        items.push(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the fake upstream drops the stream",
        )));
    }
    let stream =
        futures::stream::iter(items.into_iter().enumerate()).then(|(i, item)| async move {
            if i > 0 {
                tokio::time::sleep(CHUNK_GAP).await;
            }
            item
        });
    Body::from_stream(stream)
}

fn streamed(content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

// ---------------------------------------------------------------------------------------------
// OpenAI / OpenRouter.

fn bearer_present(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            Some(scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        })
        .unwrap_or(false)
}

/// Words across every message content, a string or an array of text parts.
fn openai_prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|message| match &message["content"] {
            Value::String(text) => words(text),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .map(words)
                .sum(),
            _ => 0,
        })
        .sum()
}

async fn openai_chat(headers: HeaderMap, Extension(arrived): Extension<Arrived>) -> Response {
    if !bearer_present(&headers) {
        return error(Provider::OpenAi, 401, "No auth credentials found");
    }
    let body = &arrived.body;
    let Some(model) = body["model"].as_str().filter(|m| !m.is_empty()) else {
        return error(Provider::OpenAi, 400, "model is required");
    };
    let Some(messages) = body["messages"].as_array() else {
        return error(Provider::OpenAi, 400, "messages must be an array");
    };
    let (text, chunks) = content(&arrived, Provider::OpenAi, model);
    let prompt_tokens = openai_prompt_tokens(messages);
    let completion_tokens = words(&text);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("gen-{}", Uuid::new_v4().simple());
    let created = unix_now();

    if body["stream"].as_bool() != Some(true) {
        return Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }],
            "usage": usage,
        }))
        .into_response();
    }

    let chunk = |choices: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        })
    };
    let mut events: Vec<Value> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, word)| {
            let delta = if i == 0 {
                json!({"role": "assistant", "content": word})
            } else {
                json!({"content": word})
            };
            chunk(json!([{"index": 0, "delta": delta, "finish_reason": null}]))
        })
        .collect();
    events.push(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
    ));
    if body["stream_options"]["include_usage"].as_bool() == Some(true) {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        events.push(last);
    }
    let mut pieces: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if arrived.drop_after.is_none() {
        pieces.push("data: [DONE]\n\n".to_string());
    }
    streamed("text/event-stream", events_body(&arrived, pieces))
}

/// One model of OpenRouter's `GET /api/v1/models` list, in its documented shape; prices are
/// dollars per token as decimal strings.
pub fn openrouter_model(id: &str, context_length: u64, prompt: &str, completion: &str) -> Value {
    json!({
        "id": id,
        "canonical_slug": id,
        "name": id,
        "created": 1_715_367_049,
        "description": format!("{id}, served by the fake upstream."),
        "context_length": context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": null,
        },
        "pricing": {
            "prompt": prompt,
            "completion": completion,
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",
        },
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": 16384,
            "is_moderated": false,
        },
        "per_request_limits": null,
        "supported_parameters": ["max_tokens", "temperature", "stream"],
    })
}

async fn openai_models(State(shared): State<Arc<Shared>>) -> Response {
    let configured = shared
        .models
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(body) = configured {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    Json(json!({"data": [
        openrouter_model("openai/gpt-4o", 128000, "0.0000025", "0.00001"),
        openrouter_model("openai/gpt-4o-mini", 128000, "0.00000015", "0.0000006"),
        openrouter_model("anthropic/claude-3.5-sonnet", 200000, "0.000003", "0.000015"),
        openrouter_model("meta-llama/llama-3.1-8b-instruct", 131072, "0.00000002", "0.00000005"),
    ]}))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Google Gemini.

fn gemini_key_present(headers: &HeaderMap, query: &str) -> bool {
    let in_header = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    let in_query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(name, value)| name == "key" && !value.is_empty());
    in_header || in_query
}

fn query_has(query: &str, wanted: &str) -> bool {
    query.split('&').any(|pair| pair == wanted)
}

fn gemini_text_words(content: &Value) -> u64 {
    content["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .map(words)
                .sum()
        })
        .unwrap_or(0)
}

const NO_KEY: &str =
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";

async fn gemini_models(headers: HeaderMap, Extension(arrived): Extension<Arrived>) -> Response {
    if !gemini_key_present(&headers, &arrived.query) {
        return error(Provider::Gemini, 403, NO_KEY);
    }
    let model = |name: &str, display: &str, input: u64, output: u64| {
        json!({
            "name": format!("models/{name}"),
            "version": "001",
            "displayName": display,
            "inputTokenLimit": input,
            "outputTokenLimit": output,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        })
    };
    Json(json!({"models": [
        model("gemini-1.5-pro", "Gemini 1.5 Pro", 2_000_000, 8192),
        model("gemini-1.5-flash", "Gemini 1.5 Flash", 1_000_000, 8192),
        model("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8192),
    ]}))
    .into_response()
}

async fn gemini_generate(
    Path(model_action): Path<String>,
    headers: HeaderMap,
    Extension(arrived): Extension<Arrived>,
) -> Response {
    if !gemini_key_present(&headers, &arrived.query) {
        return error(Provider::Gemini, 403, NO_KEY);
    }
    let Some((model, action)) = model_action.rsplit_once(':') else {
        return error(
            Provider::Gemini,
            404,
            &format!("models/{model_action} is not found"),
        );
    };
    let streaming = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return error(
                Provider::Gemini,
                404,
                &format!("the method {action} of models/{model} is not found"),
            )
        }
    };
    let body = &arrived.body;
    let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
        return error(
            Provider::Gemini,
            400,
            "* GenerateContentRequest.contents: contents is not specified",
        );
    };
    let prompt_tokens: u64 = contents.iter().map(gemini_text_words).sum::<u64>()
        + gemini_text_words(&body["systemInstruction"]);
    let (text, chunks) = content(&arrived, Provider::Gemini, model);
    let response_id = Uuid::new_v4().simple().to_string();
    let response = |text: &str, candidates_tokens: u64, finished: bool| {
        let mut candidate = json!({
            "content": {"role": "model", "parts": [{"text": text}]},
            "index": 0,
        });
        if finished {
            candidate["finishReason"] = json!("STOP");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": candidates_tokens,
                "totalTokenCount": prompt_tokens + candidates_tokens,
            },
            "modelVersion": model,
            "responseId": response_id,
        })
    };

    if !streaming {
        return Json(response(&text, words(&text), true)).into_response();
    }

    let last = chunks.len().saturating_sub(1);
    let events: Vec<Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, word)| response(word, i as u64 + 1, i == last))
        .collect();
    if query_has(&arrived.query, "alt=sse") {
        let pieces = events
            .iter()
            .map(|e| format!("data: {e}\r\n\r\n"))
            .collect();
        streamed("text/event-stream", events_body(&arrived, pieces))
    } else {
        // Without `alt=sse`, Gemini streams one JSON array, element by element.
        let mut pieces: Vec<String> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if i == 0 {
                    format!("[{e}")
                } else {
                    format!(",\r\n{e}")
                }
            })
            .collect();
        if arrived.drop_after.is_none() {
            pieces.push("]".to_string());
        }
        streamed("application/json", paced_body(pieces, arrived.drop_after))
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client")
    }

    fn chat(stream: bool) -> Value {
        json!({
            "model": "openai/gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello please"},
            ],
            "stream": stream,
            "stream_options": {"include_usage": true},
        })
    }

    /// The `data:` payloads of an SSE body (either line ending).
    fn sse_data(body: &str) -> Vec<String> {
        body.replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn openai_answer_and_usage() {
        let up = Upstream::start().await;
        let reply = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&chat(false))
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.expect("json");
        assert_eq!(body["object"], "chat.completion");
        assert!(body["id"].as_str().expect("id").starts_with("gen-"));
        assert_eq!(body["model"], "openai/gpt-4o");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Hello from openai openai/gpt-4o!"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
        );

        let recorded = up.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].path, "/api/v1/chat/completions");
        assert_eq!(recorded[0].body, chat(false));
        assert!(recorded[0]
            .headers
            .contains(&("authorization".into(), "Bearer sk-test".into())));
    }

    #[tokio::test]
    async fn openai_requires_a_bearer_token() {
        let up = Upstream::start().await;
        let reply = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .json(&chat(false))
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 401);
        let body: Value = reply.json().await.expect("json");
        assert_eq!(body["error"]["code"], 401);
        assert!(body["error"]["message"].is_string());
        assert_eq!(up.requests().len(), 1);
    }

    #[tokio::test]
    async fn openai_stream_ends_with_usage_and_done() {
        let up = Upstream::start().await;
        let reply = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&chat(true))
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 200);
        assert_eq!(
            reply.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut parts = 0;
        let mut raw = Vec::new();
        let mut stream = reply.bytes_stream();
        while let Some(part) = stream.next().await {
            raw.extend_from_slice(&part.expect("part"));
            parts += 1;
        }
        assert!(parts > 1, "the answer arrived in one piece");
        let data = sse_data(&String::from_utf8(raw).expect("utf-8"));
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).expect("chunk json"))
            .collect();
        // 4 words, the finish chunk, the usage chunk.
        assert_eq!(chunks.len(), 6);
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "openai/gpt-4o"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks[1]["choices"][0]["delta"].get("role").is_none());
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from openai openai/gpt-4o!");
        assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[5]["choices"], json!([]));
        assert_eq!(
            chunks[5]["usage"],
            json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
        );
    }

    #[tokio::test]
    async fn openai_stream_without_usage_option_has_no_usage_chunk() {
        let up = Upstream::start().await;
        let mut request = chat(true);
        request
            .as_object_mut()
            .expect("object")
            .remove("stream_options");
        let text = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&request)
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("body");
        let data = sse_data(&text);
        assert_eq!(data.len(), 6, "4 words, finish, [DONE]: {data:?}");
        assert!(!text.contains("usage"));
    }

    #[tokio::test]
    async fn gemini_stream_has_cumulative_usage() {
        let up = Upstream::start().await;
        let request = json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi there"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [{"text": "Greet me now"}]},
            ],
            "generationConfig": {"maxOutputTokens": 64},
        });
        let reply = client()
            .post(format!(
                "{}/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse&key=g-test",
                up.gemini_base_url()
            ))
            .json(&request)
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 200);
        assert_eq!(
            reply.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        let body = reply.text().await.expect("body");
        assert!(body.contains("\r\n\r\n"));
        assert!(!body.contains("[DONE]"));
        let events: Vec<Value> = sse_data(&body)
            .iter()
            .map(|d| serde_json::from_str(d).expect("event json"))
            .collect();
        assert_eq!(events.len(), 4);
        let prompt = 2 + 2 + 1 + 3; // system, then each turn
        let mut text = String::new();
        for (i, event) in events.iter().enumerate() {
            let candidate = &event["candidates"][0];
            assert_eq!(candidate["content"]["role"], "model");
            text.push_str(
                candidate["content"]["parts"][0]["text"]
                    .as_str()
                    .expect("text"),
            );
            let done = i + 1;
            assert_eq!(
                event["usageMetadata"],
                json!({
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": done,
                    "totalTokenCount": prompt + done,
                })
            );
            assert_eq!(event["modelVersion"], "gemini-1.5-pro");
            if i + 1 == events.len() {
                assert_eq!(candidate["finishReason"], "STOP");
            } else {
                assert!(candidate.get("finishReason").is_none());
            }
        }
        assert_eq!(text, "Hello from gemini gemini-1.5-pro!");
        let recorded = up.requests();
        assert_eq!(
            recorded[0].path,
            "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
        );
        assert_eq!(recorded[0].query, "alt=sse&key=g-test");
        assert_eq!(recorded[0].body, request);
    }

    #[tokio::test]
    async fn gemini_answer_key_and_actions() {
        let up = Upstream::start().await;
        let url = |action: &str| {
            format!(
                "{}/v1beta/models/gemini-2.0-flash:{action}",
                up.gemini_base_url()
            )
        };
        let request = json!({"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]});

        let reply = client()
            .post(url("generateContent"))
            .header("x-goog-api-key", "g-test")
            .json(&request)
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.expect("json");
        assert_eq!(
            body["candidates"][0]["content"]["parts"][0]["text"],
            "Hello from gemini gemini-2.0-flash!"
        );
        assert_eq!(body["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            body["usageMetadata"],
            json!({"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7})
        );

        let reply = client()
            .post(url("generateContent"))
            .json(&request)
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 403);
        let body: Value = reply.json().await.expect("json");
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(body["error"]["code"], 403);

        let reply = client()
            .post(url("embedEverything"))
            .header("x-goog-api-key", "g-test")
            .json(&request)
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 404);
        assert_eq!(up.requests().len(), 3);
    }

    #[tokio::test]
    async fn queued_429_then_ok() {
        let up = Upstream::start().await;
        up.push(Behavior::Status(429));
        let send = || {
            client()
                .post(format!("{}/chat/completions", up.openai_base_url()))
                .bearer_auth("sk-test")
                .json(&chat(false))
                .send()
        };
        let first = send().await.expect("sent");
        assert_eq!(first.status(), 429);
        assert_eq!(first.headers()[reqwest::header::RETRY_AFTER], "1");
        let body: Value = first.json().await.expect("json");
        assert_eq!(body["error"]["code"], 429);
        let second = send().await.expect("sent");
        assert_eq!(second.status(), 200);
        assert_eq!(up.requests().len(), 2);

        up.push(Behavior::Status(503));
        let reply = client()
            .post(format!(
                "{}/v1beta/models/gemini-1.5-pro:generateContent",
                up.gemini_base_url()
            ))
            .header("x-goog-api-key", "g-test")
            .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 503);
        let body: Value = reply.json().await.expect("json");
        assert_eq!(body["error"]["status"], "UNAVAILABLE");
    }

    #[tokio::test]
    async fn dropped_stream_and_dropped_answer() {
        let up = Upstream::start().await;
        up.push(Behavior::DropAfterChunks(2));
        let reply = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&chat(true))
            .send()
            .await
            .expect("headers arrive");
        assert_eq!(reply.status(), 200);
        let mut raw = Vec::new();
        let mut failed = false;
        let mut stream = reply.bytes_stream();
        while let Some(part) = stream.next().await {
            match part {
                Ok(bytes) => raw.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the stream ended cleanly");
        let data = sse_data(&String::from_utf8(raw).expect("utf-8"));
        assert_eq!(data.len(), 2, "{data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"));

        up.push(Behavior::DropAfterChunks(0));
        let outcome = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&chat(false))
            .send()
            .await;
        assert!(outcome.is_err(), "got a response: {outcome:?}");

        // The next request is served normally again.
        let reply = client()
            .post(format!("{}/chat/completions", up.openai_base_url()))
            .bearer_auth("sk-test")
            .json(&chat(false))
            .send()
            .await
            .expect("sent");
        assert_eq!(reply.status(), 200);
        assert_eq!(up.requests().len(), 3);
    }

    #[tokio::test]
    async fn delayed_first_byte_and_models() {
        let up = Upstream::start().await;
        up.push(Behavior::DelayFirstByte(Duration::from_millis(300)));
        let started = tokio::time::Instant::now();
        let reply = client()
            .get(format!("{}/models", up.openai_base_url()))
            .send()
            .await
            .expect("sent");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().await.expect("json");
        let models = body["data"].as_array().expect("data");
        assert!(models.len() >= 3);
        assert_eq!(models[0]["id"], "openai/gpt-4o");
        assert_eq!(models[0]["pricing"]["prompt"], "0.0000025");
    }
}
