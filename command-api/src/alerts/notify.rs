//! The notifier: works off the `alert_notifications` outbox (filled by the alerting projection
//! from `alert.triggered` and `alert.resolved`), sends each row to its channel — a signed
//! webhook, a Slack incoming webhook or an email — and records every attempt as an event,
//! `notification.delivered` or `notification.failed`, retrying with exponential backoff.
//!
//! Tenants name the URLs, so every delivery resolves the host first and refuses any address
//! that is not public (loopback, private, link-local and so the cloud metadata address, shared,
//! unique-local …) unless the operator allowed its network (`AIHUB_WEBHOOK_ALLOW_NETWORKS`);
//! the request then goes to the address that was checked, so a second DNS answer cannot point
//! it elsewhere, and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use events::alerting::{NotificationChannel, NotificationDelivered, NotificationFailed};
use events::{Actor, EventEnvelope, EventPayload, StreamId};
use hmac::{Hmac, KeyInit, Mac};
use ipnet::IpNet;
use platform::db::PgPool;
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;

use crate::journal::JournalError;
use crate::Journal;

/// The header carrying the signature: `v1=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub const SIGNATURE_HEADER: &str = "x-aihub-signature";
/// Unix seconds when the request was signed; receivers refuse old ones (replays).
pub const TIMESTAMP_HEADER: &str = "x-aihub-timestamp";
/// The notification's id: the same on every retry, so a receiver can drop a duplicate.
pub const DELIVERY_HEADER: &str = "x-aihub-delivery";

/// Attempts before a notification is given up (about a day with the default backoff).
pub const MAX_ATTEMPTS: i32 = 20;
const BATCH: i64 = 32;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// `smtp://host:port` (plain, for a local relay), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://user:password@host:port`; none: email channels fail.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// Networks a webhook may reach although they are not public.
    pub allow_networks: Vec<IpNet>,
    /// The first retry's delay; each next one doubles, up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            smtp_from: "AI Hub <alerts@aihub.invalid>".into(),
            allow_networks: vec![],
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3_600),
        }
    }
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff(config: &NotifyConfig, attempts: i32) -> Duration {
    let shift = attempts.saturating_sub(1).clamp(0, 30) as u32;
    config
        .backoff
        .saturating_mul(1u32 << shift)
        .min(config.backoff_max)
}

/// A webhook URL a tenant may name: `http` or `https` with a host, no credentials.
pub fn parse_target(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|_| format!("{raw:?} is not a URL."))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("A webhook URL is http or https.".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("A webhook URL names a host.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("A webhook URL carries no credentials.".into());
    }
    if raw.len() > 2048 {
        return Err("A webhook URL is at most 2048 characters.".into());
    }
    Ok(url)
}

/// Whether an address is on the public internet: what a tenant's webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// Why an attempt did not deliver.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try later (the receiver is down, answered 5xx, …).
    Retry(String),
    /// Will never work as configured (an internal address, a URL that does not parse).
    Refused(String),
}

/// The address to send a tenant's webhook to: its host resolved, every answer checked.
pub async fn resolve_allowed(url: &reqwest::Url, allow: &[IpNet]) -> Result<SocketAddr, Failure> {
    let host = url
        .host_str()
        .ok_or_else(|| Failure::Refused("the URL has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| Failure::Retry(format!("resolving {bare}: {e}")))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(Failure::Retry(format!("{bare} has no address")));
    }
    for address in &addresses {
        let ip = address.ip();
        if !is_public(ip) && !allow.iter().any(|net| net.contains(&ip)) {
            return Err(Failure::Refused(format!(
                "{bare} resolves to {ip}, an internal address a webhook may not reach"
            )));
        }
    }
    Ok(addresses[0])
}

/// `v1=<hex>`: the signature of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One outbox row, with what the message says.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub org_id: Uuid,
    pub alert_id: Uuid,
    pub alert_event_id: Uuid,
    pub event_type: String,
    pub channel_index: i32,
    pub channel: NotificationChannel,
    pub attempts: i32,
    /// The JSON body of a webhook.
    pub message: Value,
    /// One line for Slack and the email's subject.
    pub summary: String,
    pub rule_id: Uuid,
    pub correlation_id: String,
}

pub struct Notifier {
    pool: PgPool,
    journal: Journal,
    config: NotifyConfig,
}

impl Notifier {
    pub fn new(pool: PgPool, config: NotifyConfig) -> Self {
        Self {
            journal: Journal::new(pool.clone()),
            pool,
            config,
        }
    }

    /// Sends every notification due now; how many were attempted.
    pub async fn tick(&self) -> anyhow::Result<usize> {
        let due = self.due().await?;
        let n = due.len();
        let attempts = due.into_iter().map(|p| async move {
            let outcome = self.deliver(&p).await;
            if let Err(e) = self.record(&p, outcome).await {
                tracing::warn!(notification = %p.id, error = %format!("{e:#}"), "could not record a notification attempt");
            }
        });
        futures::future::join_all(attempts).await;
        Ok(n)
    }

    async fn due(&self) -> anyhow::Result<Vec<Pending>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT n.id, n.org_id, n.alert_id, n.alert_event_id, n.event_type, n.channel_index, n.channel,
                        n.data, n.occurred_at, n.attempts, n.correlation_id,
                        a.rule_name, a.severity, a.metric, a.condition, a.threshold, a.filter
                 FROM alert_notifications n LEFT JOIN read.alerts a ON a.id = n.alert_id
                 WHERE n.status = 'pending' AND n.next_attempt_at <= now()
                 ORDER BY n.next_attempt_at LIMIT $1",
                &[&BATCH],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let channel: NotificationChannel = match serde_json::from_value(row.get("channel")) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable notification channel; skipped");
                    continue;
                }
            };
            let data: Value = row.get("data");
            let event_type: String = row.get("event_type");
            let occurred_at: DateTime<Utc> = row.get("occurred_at");
            let rule_name: Option<String> = row.get("rule_name");
            let rule_name = rule_name
                .or_else(|| data["rule_name"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let severity: Option<String> = row.get("severity");
            let severity = severity.unwrap_or_else(|| "warning".into());
            let metric: Option<String> = row.get("metric");
            let metric = metric.unwrap_or_default();
            let condition: Option<String> = row.get("condition");
            let condition = condition.unwrap_or_default();
            let threshold: Option<f64> = row.get("threshold");
            let filter: Option<Value> = row.get("filter");
            let id: Uuid = row.get("id");
            let alert_id: Uuid = row.get("alert_id");
            let org_id: Uuid = row.get("org_id");
            let rule_id = data["rule_id"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or_default();
            let firing = event_type == "alert.triggered";
            let value = data["value"].as_f64();
            let shown = value.map_or("no data".to_string(), |v| format!("{v}"));
            let summary = if firing {
                format!(
                    "[{severity}] Alert firing: {rule_name}: {metric} {condition} {} (value {shown})",
                    threshold.unwrap_or_default()
                )
            } else {
                format!("[{severity}] Alert resolved: {rule_name}: {metric} is {shown}")
            };
            let message = json!({
                "id": id,
                "type": event_type,
                "occurred_at": events::Timestamp(occurred_at),
                "org_id": org_id,
                "summary": summary,
                "alert": {
                    "id": alert_id,
                    "rule_id": rule_id,
                    "rule_name": rule_name,
                    "status": if firing { "firing" } else { "resolved" },
                    "severity": severity,
                    "metric": metric,
                    "filter": filter.unwrap_or_else(|| json!({})),
                    "condition": condition,
                    "threshold": threshold,
                    "value": value,
                },
            });
            out.push(Pending {
                id,
                org_id,
                alert_id,
                alert_event_id: row.get("alert_event_id"),
                event_type,
                channel_index: row.get("channel_index"),
                channel,
                attempts: row.get("attempts"),
                message,
                summary,
                rule_id,
                correlation_id: row.get("correlation_id"),
            });
        }
        Ok(out)
    }

    /// One attempt to send `p`.
    pub async fn deliver(&self, p: &Pending) -> Result<(), Failure> {
        match &p.channel {
            NotificationChannel::Webhook { url } => {
                let secret = self.secret(p.rule_id).await?;
                let body = serde_json::to_vec(&p.message).unwrap_or_default();
                let timestamp = Utc::now().timestamp();
                let signature = sign(&secret, timestamp, &body);
                self.post(
                    url,
                    body,
                    &[
                        (SIGNATURE_HEADER, signature),
                        (TIMESTAMP_HEADER, timestamp.to_string()),
                        (DELIVERY_HEADER, p.id.to_string()),
                    ],
                )
                .await
            }
            NotificationChannel::Slack { url } => {
                let body = serde_json::to_vec(&json!({"text": p.summary})).unwrap_or_default();
                self.post(url, body, &[]).await
            }
            NotificationChannel::Email { to } => self.email(to, p).await,
        }
    }

    async fn secret(&self, rule_id: Uuid) -> Result<String, Failure> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| Failure::Retry(format!("database: {e}")))?;
        let row = client
            .query_opt(
                "SELECT secret FROM alert_rule_secrets WHERE rule_id = $1",
                &[&rule_id],
            )
            .await
            .map_err(|e| Failure::Retry(format!("database: {e}")))?;
        row.map(|r| r.get(0))
            .ok_or_else(|| Failure::Refused("the rule has no signing secret".into()))
    }

    async fn post(
        &self,
        raw: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(), Failure> {
        let url = parse_target(raw).map_err(Failure::Refused)?;
        let address = resolve_allowed(&url, &self.config.allow_networks).await?;
        let host = url.host_str().unwrap_or_default().to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .resolve(&host, address)
            .build()
            .map_err(|e| Failure::Retry(format!("HTTP client: {e}")))?;
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "aihub-alerts/1")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("sending: {}", without_url(&e))))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Retry(format!("the receiver answered {status}")))
        }
    }

    async fn email(&self, to: &[String], p: &Pending) -> Result<(), Failure> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let Some(smtp) = self.config.smtp_url.as_deref() else {
            return Err(Failure::Retry(
                "no SMTP server is configured (AIHUB_SMTP_URL)".into(),
            ));
        };
        let from = self
            .config
            .smtp_from
            .parse()
            .map_err(|e| Failure::Refused(format!("AIHUB_SMTP_FROM: {e}")))?;
        let mut builder = Message::builder().from(from).subject(p.summary.clone());
        for address in to {
            let mailbox = address
                .parse()
                .map_err(|e| Failure::Refused(format!("{address}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let text = format!(
            "{}\n\n{}\n\nNotification {}.\n",
            p.summary,
            serde_json::to_string_pretty(&p.message["alert"]).unwrap_or_default(),
            p.id
        );
        let message = builder
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| Failure::Refused(format!("building the email: {e}")))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp)
            .map_err(|e| Failure::Retry(format!("AIHUB_SMTP_URL: {e}")))?
            .timeout(Some(HTTP_TIMEOUT))
            .build();
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| Failure::Retry(format!("SMTP: {e}")))
    }

    /// Records the attempt as an event, then on the outbox row.
    async fn record(&self, p: &Pending, outcome: Result<(), Failure>) -> anyhow::Result<()> {
        let attempts = p.attempts + 1;
        let stream = StreamId::notification(p.id);
        let channel = p.channel.kind().to_string();
        let channel_index = p.channel_index as u32;
        let (payload, status, next, error) = match outcome {
            Ok(()) => (
                EventPayload::NotificationDelivered(NotificationDelivered {
                    alert_id: p.alert_id,
                    alert_event_id: p.alert_event_id,
                    channel,
                    channel_index,
                    attempts: attempts as u32,
                }),
                "delivered",
                None,
                None,
            ),
            Err(failure) => {
                let (error, last) = match failure {
                    Failure::Retry(e) => (e, attempts >= MAX_ATTEMPTS),
                    Failure::Refused(e) => (e, true),
                };
                let next = (!last).then(|| {
                    Utc::now()
                        + chrono::Duration::from_std(backoff(&self.config, attempts))
                            .unwrap_or_default()
                });
                (
                    EventPayload::NotificationFailed(NotificationFailed {
                        alert_id: p.alert_id,
                        alert_event_id: p.alert_event_id,
                        channel,
                        channel_index,
                        attempts: attempts as u32,
                        error: error.clone(),
                        next_attempt_at: next.map(events::Timestamp),
                    }),
                    if last { "failed" } else { "pending" },
                    next,
                    Some(error),
                )
            }
        };
        if status == "failed" || error.is_some() {
            tracing::warn!(notification = %p.id, attempts, error = error.as_deref().unwrap_or_default(), "notification attempt failed");
        }
        let mut event = EventEnvelope::new(
            payload,
            Some(p.org_id),
            stream.clone(),
            i64::from(attempts),
            Actor::system(),
            // An attempt carries the correlation id of the alert event it notifies.
            p.correlation_id.clone(),
        );
        event.causation_id = Some(p.alert_event_id);
        match self.journal.append(&[event], &[]).await {
            Ok(()) => {}
            Err(JournalError::VersionConflict) => {
                // Another leader recorded this attempt: take the stream's word for it.
                let recorded = self.journal.load(&stream).await?;
                let delivered = recorded
                    .last()
                    .is_some_and(|e| matches!(e.payload, EventPayload::NotificationDelivered(_)));
                let client = self.pool.get().await?;
                client
                    .execute(
                        "UPDATE alert_notifications SET attempts = $2,
                            status = CASE WHEN $3 THEN 'delivered' ELSE status END
                         WHERE id = $1",
                        &[&p.id, &(recorded.len() as i32), &delivered],
                    )
                    .await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE alert_notifications SET attempts = $2, status = $3,
                    next_attempt_at = COALESCE($4, next_attempt_at), last_error = $5
                 WHERE id = $1",
                &[&p.id, &attempts, &status, &next, &error],
            )
            .await?;
        Ok(())
    }
}

/// A reqwest error's text without the URL (a tenant's URL may hold a token in its path).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                !is_public(ip.parse().expect("ip")),
                "{ip} counted as public"
            );
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(
                is_public(ip.parse().expect("ip")),
                "{ip} counted as internal"
            );
        }
    }

    #[tokio::test]
    async fn a_loopback_url_is_refused_unless_its_network_is_allowed() {
        let url = parse_target("http://127.0.0.1:9/hook").expect("url");
        assert!(matches!(
            resolve_allowed(&url, &[]).await,
            Err(Failure::Refused(_))
        ));
        let allowed: IpNet = "127.0.0.1/32".parse().expect("net");
        assert!(resolve_allowed(&url, &[allowed]).await.is_ok());
        let localhost = parse_target("http://localhost:9/hook").expect("url");
        assert!(matches!(
            resolve_allowed(&localhost, &[]).await,
            Err(Failure::Refused(_))
        ));
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = sign("whsec_x", 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, sign("whsec_x", 1_700_000_001, b"{}"));
        assert_ne!(a, sign("whsec_x", 1_700_000_000, b"{ }"));
        assert_ne!(a, sign("whsec_y", 1_700_000_000, b"{}"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = NotifyConfig::default();
        assert_eq!(backoff(&config, 1), Duration::from_secs(1));
        assert_eq!(backoff(&config, 2), Duration::from_secs(2));
        assert_eq!(backoff(&config, 5), Duration::from_secs(16));
        assert_eq!(backoff(&config, 40), Duration::from_secs(3_600));
    }

    #[test]
    fn webhook_urls_are_http_with_a_host_and_no_credentials() {
        assert!(parse_target("https://hooks.example.com/x").is_ok());
        assert!(parse_target("ftp://hooks.example.com/x").is_err());
        assert!(parse_target("https://user:pw@hooks.example.com/x").is_err());
        assert!(parse_target("not a url").is_err());
    }
}
