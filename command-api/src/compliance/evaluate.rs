//! The pure part of a compliance report: a fold over the organization's chain, in chain order,
//! that keeps only what the controls need (who holds which role, each key's facts, bursts of
//! failed authentications, alerts, data-subject requests, the chain's links), then judges each
//! control at the end of the period. Envelopes are read as JSON, not decoded into the typed
//! events, so an event type this build does not know (a newer one) is walked, not refused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use api::compliance::{
    ComplianceControl, ComplianceFinding, ComplianceFramework, CompliancePeriod,
    ComplianceReportContent, ComplianceSummary, ControlResult, Period,
};
use chrono::{DateTime, Duration, Utc};
use events::audit::{Break, Walker};
use serde_json::Value;
use uuid::Uuid;

/// A key not used (nor created) for this long is stale.
pub const STALE_AFTER: Duration = Duration::days(90);
/// At least this many failed authentications within `BURST_WINDOW` make a burst.
pub const BURST_FAILURES: u64 = 20;
pub const BURST_WINDOW: Duration = Duration::minutes(5);
/// An alert must be acknowledged within this.
pub const ACK_WITHIN: Duration = Duration::hours(1);

const MAX_FINDINGS: usize = 100;
const MAX_FINDING_EVIDENCE: usize = 20;
const MAX_EVIDENCE: usize = 200;

/// The roles whose holders an access review lists.
const PRIVILEGED: [&str; 2] = ["owner", "admin"];

#[derive(Debug, Default)]
struct Key {
    created: Option<Uuid>,
    created_at: Option<DateTime<Utc>>,
    owner: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    /// The events that set the key's expiry as it stands (creation, then updates).
    expiry_evidence: Vec<Uuid>,
    revoked: bool,
    enabled: bool,
    last_used: Option<(DateTime<Utc>, Uuid)>,
}

impl Key {
    fn active(&self, at: DateTime<Utc>) -> bool {
        self.created.is_some()
            && !self.revoked
            && self.enabled
            && self.expires_at.is_none_or(|e| e > at)
    }
}

#[derive(Debug, Default)]
struct User {
    /// (role, team) → the event that granted it.
    roles: BTreeMap<(String, Option<Uuid>), Uuid>,
    owner: Option<Uuid>,
    /// Held a role or ownership at some point.
    held: bool,
    /// The latest events that took a role or ownership away (at most a few).
    removals: Vec<Uuid>,
    erased: Option<Uuid>,
}

impl User {
    fn holds_anything(&self) -> bool {
        self.owner.is_some() || !self.roles.is_empty()
    }
}

struct Change {
    event: Uuid,
    detail: String,
    attributed: bool,
}

struct Burst {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    failures: u64,
    evidence: Vec<Uuid>,
}

struct Alert {
    triggered: Uuid,
    triggered_at: DateTime<Utc>,
    acknowledged: Option<(DateTime<Utc>, Uuid)>,
}

struct Request {
    event: Uuid,
    kind: String,
    at: DateTime<Utc>,
    users: usize,
}

/// The fold. Feed it the chain with `push`, then `finish`.
pub struct Evaluator {
    framework: ComplianceFramework,
    period: Period,
    /// The instant state is judged at: the end of the period, or the request when earlier.
    end: DateTime<Utc>,
    walker: Walker,
    chain_break: Option<Break>,
    events_read: u64,
    last_linked: Option<(i64, Uuid)>,
    last_checkpoint: Option<Uuid>,
    users: BTreeMap<Uuid, User>,
    keys: BTreeMap<Uuid, Key>,
    changes: Vec<Change>,
    changes_total: u64,
    window: VecDeque<(DateTime<Utc>, u64, Uuid)>,
    window_failures: u64,
    auth_failure_events: u64,
    bursts: Vec<Burst>,
    bursts_total: u64,
    alerts: BTreeMap<String, Alert>,
    alert_events: u64,
    requests: Vec<Request>,
    requests_total: u64,
}

fn time(envelope: &Value) -> Option<DateTime<Utc>> {
    envelope
        .get("occurred_at")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn uuid(value: Option<&Value>) -> Option<Uuid> {
    value.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// The id of a `kind:<uuid>` stream.
fn stream_uuid(envelope: &Value, kind: &str) -> Option<Uuid> {
    let stream = envelope.get("stream_id").and_then(Value::as_str)?;
    let (k, key) = stream.split_once(':')?;
    (k == kind).then(|| key.parse().ok()).flatten()
}

fn push_capped(list: &mut Vec<Uuid>, id: Uuid, cap: usize) {
    if list.len() < cap && !list.contains(&id) {
        list.push(id);
    }
}

impl Evaluator {
    pub fn new(
        framework: ComplianceFramework,
        period: Period,
        as_of: DateTime<Utc>,
        chain: &str,
        public_key_hex: Option<&str>,
    ) -> Self {
        Self {
            framework,
            period,
            end: period.to.min(as_of),
            walker: Walker::new(
                chain,
                public_key_hex.and_then(events::audit::public_key_from_hex),
            ),
            chain_break: None,
            events_read: 0,
            last_linked: None,
            last_checkpoint: None,
            users: BTreeMap::new(),
            keys: BTreeMap::new(),
            changes: Vec::new(),
            changes_total: 0,
            window: VecDeque::new(),
            window_failures: 0,
            auth_failure_events: 0,
            bursts: Vec::new(),
            bursts_total: 0,
            alerts: BTreeMap::new(),
            alert_events: 0,
            requests: Vec::new(),
            requests_total: 0,
        }
    }

    fn in_period(&self, at: DateTime<Utc>) -> bool {
        at >= self.period.from && at < self.end
    }

    /// One event of the chain, in chain order.
    pub fn push(&mut self, envelope: &Value) {
        self.events_read += 1;
        if self.chain_break.is_none() {
            match self.walker.push(envelope) {
                Ok(_) => {
                    if let (Some(seq), Some(id)) = (
                        envelope
                            .get("chain")
                            .and_then(|c| c.get("seq"))
                            .and_then(Value::as_i64),
                        uuid(envelope.get("event_id")),
                    ) {
                        self.last_linked = Some((seq, id));
                    }
                }
                Err(broken) => self.chain_break = Some(broken),
            }
        }
        let (Some(id), Some(at)) = (uuid(envelope.get("event_id")), time(envelope)) else {
            return;
        };
        // State is judged at the end of the period: later events do not count.
        if at >= self.end {
            return;
        }
        let event_type = envelope
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let data = envelope.get("data").cloned().unwrap_or(Value::Null);
        let actor_type = envelope
            .get("actor")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let actor_id = envelope
            .get("actor")
            .and_then(|a| a.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let attributed = actor_type != "system" && !actor_id.is_empty();
        match event_type {
            "organization.owner_added" | "organization.owner_removed" => {
                let Some(user_id) = uuid(data.get("user_id")) else {
                    return;
                };
                let added = event_type.ends_with("added");
                let user = self.users.entry(user_id).or_default();
                if added {
                    user.owner = Some(id);
                    user.held = true;
                } else {
                    user.owner = None;
                    user.removals.push(id);
                }
                self.change(
                    at,
                    id,
                    attributed,
                    format!(
                        "user:{user_id} {} owner by {actor_id}",
                        if added { "made" } else { "no longer" }
                    ),
                );
            }
            "user.role_assigned" | "user.role_removed" => {
                let (Some(user_id), Some(role)) = (
                    stream_uuid(envelope, "user"),
                    data.get("role").and_then(Value::as_str),
                ) else {
                    return;
                };
                let team = uuid(data.get("team_id"));
                let assigned = event_type.ends_with("assigned");
                let user = self.users.entry(user_id).or_default();
                if assigned {
                    user.roles.insert((role.to_string(), team), id);
                    user.held = true;
                } else {
                    user.roles.remove(&(role.to_string(), team));
                    user.removals.push(id);
                }
                if user.removals.len() > 5 {
                    user.removals.remove(0);
                }
                if PRIVILEGED.contains(&role) {
                    let scope = team.map(|t| format!(" in team:{t}")).unwrap_or_default();
                    self.change(
                        at,
                        id,
                        attributed,
                        format!(
                            "user:{user_id} {} {role}{scope} by {actor_id}",
                            if assigned { "given" } else { "lost" }
                        ),
                    );
                }
            }
            "person.erased" => {
                if let Some(users) = data.get("user_ids").and_then(Value::as_array) {
                    for user_id in users.iter().filter_map(|u| uuid(Some(u))) {
                        self.users.entry(user_id).or_default().erased = Some(id);
                    }
                }
                self.request(at, id, event_type, &data);
            }
            "person.exported" => self.request(at, id, event_type, &data),
            "api_key.created" => {
                let Some(key_id) = stream_uuid(envelope, "api_key") else {
                    return;
                };
                let expires_at = data
                    .get("expires_at")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                self.keys.insert(
                    key_id,
                    Key {
                        created: Some(id),
                        created_at: Some(at),
                        owner: uuid(data.get("owner_user_id")),
                        expires_at,
                        expiry_evidence: vec![id],
                        revoked: false,
                        enabled: true,
                        last_used: None,
                    },
                );
            }
            "api_key.updated" => {
                let Some(key) =
                    stream_uuid(envelope, "api_key").and_then(|k| self.keys.get_mut(&k))
                else {
                    return;
                };
                if let Some(enabled) = data.get("enabled").and_then(Value::as_bool) {
                    key.enabled = enabled;
                }
                if let Some(expiry) = data.get("expires_at").and_then(Value::as_str) {
                    key.expires_at = DateTime::parse_from_rfc3339(expiry)
                        .ok()
                        .map(|t| t.with_timezone(&Utc));
                    push_capped(&mut key.expiry_evidence, id, MAX_FINDING_EVIDENCE);
                }
            }
            "api_key.revoked" => {
                if let Some(key) =
                    stream_uuid(envelope, "api_key").and_then(|k| self.keys.get_mut(&k))
                {
                    key.revoked = true;
                }
            }
            "chat.completion.succeeded" | "chat.completion.failed" => {
                if let Some(key) = uuid(data.get("api_key_id")).and_then(|k| self.keys.get_mut(&k))
                {
                    key.last_used = Some((at, id));
                }
            }
            "auth.failed" if self.in_period(at) => {
                let count = data.get("count").and_then(Value::as_u64).unwrap_or(1);
                self.auth_failure_events += 1;
                self.failure(at, count, id);
            }
            "alert.triggered" if self.in_period(at) => {
                self.alert_events += 1;
                if let Some(stream) = envelope.get("stream_id").and_then(Value::as_str) {
                    self.alerts.entry(stream.to_string()).or_insert(Alert {
                        triggered: id,
                        triggered_at: at,
                        acknowledged: None,
                    });
                }
            }
            "alert.acknowledged" => {
                if let Some(alert) = envelope
                    .get("stream_id")
                    .and_then(Value::as_str)
                    .and_then(|s| self.alerts.get_mut(s))
                {
                    alert.acknowledged.get_or_insert((at, id));
                }
            }
            "audit.checkpoint" => self.last_checkpoint = Some(id),
            _ => {}
        }
    }

    fn change(&mut self, at: DateTime<Utc>, event: Uuid, attributed: bool, detail: String) {
        if !self.in_period(at) {
            return;
        }
        self.changes_total += 1;
        // Unattributed changes are kept whatever the cap: they decide the result.
        if self.changes.len() < MAX_FINDINGS || !attributed {
            self.changes.push(Change {
                event,
                detail,
                attributed,
            });
        }
    }

    fn request(&mut self, at: DateTime<Utc>, event: Uuid, kind: &str, data: &Value) {
        if !self.in_period(at) {
            return;
        }
        self.requests_total += 1;
        if self.requests.len() < MAX_FINDINGS {
            self.requests.push(Request {
                event,
                kind: kind.to_string(),
                at,
                users: data
                    .get("user_ids")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
            });
        }
    }

    /// A sliding window over the failures: a window reaching the threshold opens a burst, or
    /// extends the one it overlaps.
    fn failure(&mut self, at: DateTime<Utc>, count: u64, event: Uuid) {
        self.window.push_back((at, count, event));
        self.window_failures += count;
        while let Some((first, n, _)) = self.window.front().copied() {
            if first > at - BURST_WINDOW {
                break;
            }
            self.window.pop_front();
            self.window_failures -= n;
        }
        if self.window_failures < BURST_FAILURES {
            return;
        }
        let start = self.window.front().map_or(at, |w| w.0);
        match self.bursts.last_mut() {
            Some(burst) if burst.to >= start - BURST_WINDOW => {
                burst.to = at;
                burst.failures += count;
                push_capped(&mut burst.evidence, event, MAX_FINDING_EVIDENCE);
            }
            _ => {
                self.bursts_total += 1;
                if self.bursts.len() < MAX_FINDINGS {
                    let mut evidence = Vec::new();
                    for (_, _, id) in &self.window {
                        push_capped(&mut evidence, *id, MAX_FINDING_EVIDENCE);
                    }
                    self.bursts.push(Burst {
                        from: start,
                        to: at,
                        failures: self.window_failures,
                        evidence,
                    });
                }
            }
        }
    }

    /// The report.
    pub fn finish(
        self,
        report_id: Uuid,
        org_id: Uuid,
        label: &str,
        as_of: DateTime<Utc>,
        through_seq: i64,
    ) -> ComplianceReportContent {
        let controls: Vec<ComplianceControl> = checks(self.framework)
            .iter()
            .map(|(check, reference)| {
                let (title, description) = describe(*check);
                let judged = match check {
                    Check::AccessReview => self.access_review(),
                    Check::KeyExpiry => self.key_expiry(),
                    Check::StaleKeys => self.stale_keys(),
                    Check::DepartedUserKeys => self.departed_user_keys(),
                    Check::FailedAuthBursts => self.failed_auth_bursts(),
                    Check::AlertAcknowledgement => self.alert_acknowledgement(),
                    Check::AuditChain => self.audit_chain(),
                    Check::DataSubjectRequests => self.data_subject_requests(),
                };
                judged.control(check.id(), reference, title, description)
            })
            .collect();
        let mut summary = ComplianceSummary::default();
        for control in &controls {
            match control.result {
                ControlResult::Pass => summary.pass += 1,
                ControlResult::Fail => summary.fail += 1,
                ControlResult::NotApplicable => summary.not_applicable += 1,
            }
        }
        ComplianceReportContent {
            report_id,
            org_id: org_id.into(),
            framework: self.framework,
            period: CompliancePeriod {
                label: label.to_string(),
                from: millis(self.period.from).into(),
                to: millis(self.period.to).into(),
            },
            as_of: millis(as_of).into(),
            through_seq,
            events_read: self.events_read,
            summary,
            controls,
        }
    }

    fn access_review(&self) -> Judged {
        let mut judged = Judged::default();
        let mut owners = 0;
        for (user_id, user) in &self.users {
            if let Some(granted) = user.owner {
                owners += 1;
                judged.finding(
                    format!("user:{user_id}"),
                    "holds owner".into(),
                    vec![granted],
                );
            }
            for ((role, team), granted) in &user.roles {
                if role == "admin" {
                    let scope = team.map(|t| format!(" in team:{t}")).unwrap_or_default();
                    judged.finding(
                        format!("user:{user_id}"),
                        format!("holds admin{scope}"),
                        vec![*granted],
                    );
                }
            }
        }
        let unattributed: Vec<&Change> = self.changes.iter().filter(|c| !c.attributed).collect();
        for change in &self.changes {
            judged.finding(
                "privileged_change".into(),
                change.detail.clone(),
                vec![change.event],
            );
        }
        judged.findings_total += self.changes_total.saturating_sub(self.changes.len() as u64);
        let changes = self.changes_total;
        judged.result = if owners == 0 {
            judged.reason = "the organization has no owner at the end of the period".into();
            ControlResult::Fail
        } else if !unattributed.is_empty() {
            judged.reason = format!(
                "{} change(s) to owner or admin were made by no identified actor",
                unattributed.len()
            );
            ControlResult::Fail
        } else {
            judged.reason = format!(
                "{owners} owner(s) at the end of the period; {changes} change(s) to owner or admin in the period, each by an identified actor"
            );
            ControlResult::Pass
        };
        judged
    }

    fn active_keys(&self) -> impl Iterator<Item = (&Uuid, &Key)> {
        self.keys.iter().filter(|(_, k)| k.active(self.end))
    }

    fn key_expiry(&self) -> Judged {
        let mut judged = Judged::default();
        let mut active = 0;
        for (key_id, key) in self.active_keys() {
            active += 1;
            if key.expires_at.is_none() {
                judged.finding(
                    format!("api_key:{key_id}"),
                    "active and never expires".into(),
                    key.expiry_evidence.clone(),
                );
            }
        }
        judged.decide(
            format!(
                "{} of {active} active key(s) never expire",
                judged.findings_total
            ),
            format!("each of the {active} active key(s) has an expiry"),
        );
        judged
    }

    fn stale_keys(&self) -> Judged {
        let mut judged = Judged::default();
        let mut active = 0;
        for (key_id, key) in self.active_keys() {
            active += 1;
            let (last, evidence) = match (key.last_used, key.created_at, key.created) {
                (Some((at, used)), _, _) => (at, used),
                (None, Some(at), Some(created)) => (at, created),
                _ => continue,
            };
            if last <= self.end - STALE_AFTER {
                let detail = if key.last_used.is_some() {
                    format!(
                        "active and last used {} days before the end of the period",
                        (self.end - last).num_days()
                    )
                } else {
                    format!(
                        "active, created {} days before the end of the period and never used",
                        (self.end - last).num_days()
                    )
                };
                let mut ids = vec![evidence];
                if let Some(created) = key.created {
                    push_capped(&mut ids, created, MAX_FINDING_EVIDENCE);
                }
                judged.finding(format!("api_key:{key_id}"), detail, ids);
            }
        }
        judged.decide(
            format!(
                "{} of {active} active key(s) unused for {} days",
                judged.findings_total,
                STALE_AFTER.num_days()
            ),
            format!(
                "each of the {active} active key(s) was created or used in the last {} days",
                STALE_AFTER.num_days()
            ),
        );
        judged
    }

    fn departed_user_keys(&self) -> Judged {
        let mut judged = Judged::default();
        let mut departed = 0;
        for (user_id, user) in &self.users {
            let gone = user.erased.is_some() || (user.held && !user.holds_anything());
            if !gone {
                continue;
            }
            departed += 1;
            for (key_id, key) in self
                .active_keys()
                .filter(|(_, k)| k.owner == Some(*user_id))
            {
                let mut ids: Vec<Uuid> = key.created.into_iter().collect();
                for removal in user.removals.iter().chain(user.erased.iter()) {
                    push_capped(&mut ids, *removal, MAX_FINDING_EVIDENCE);
                }
                let why = if user.erased.is_some() {
                    "was erased"
                } else {
                    "holds no role any more"
                };
                judged.finding(
                    format!("api_key:{key_id}"),
                    format!("still active; its owner user:{user_id} {why}"),
                    ids,
                );
            }
        }
        judged.decide(
            format!(
                "{} active key(s) belong to users who hold no role any more or were erased",
                judged.findings_total
            ),
            format!("none of the {departed} user(s) removed from every role or erased has an active key"),
        );
        judged
    }

    fn failed_auth_bursts(&self) -> Judged {
        let mut judged = Judged::default();
        for burst in &self.bursts {
            judged.finding(
                "auth_failures".into(),
                format!(
                    "{} failed authentications from {} to {}",
                    burst.failures,
                    millis(burst.from).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    millis(burst.to).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
                burst.evidence.clone(),
            );
        }
        judged.findings_total = self.bursts_total;
        judged.decide(
            format!(
                "{} burst(s) of at least {BURST_FAILURES} failed authentications within {} minutes",
                self.bursts_total,
                BURST_WINDOW.num_minutes()
            ),
            format!(
                "{} auth.failed event(s) in the period, no burst of {BURST_FAILURES} within {} minutes",
                self.auth_failure_events,
                BURST_WINDOW.num_minutes()
            ),
        );
        judged
    }

    fn alert_acknowledgement(&self) -> Judged {
        let mut judged = Judged::default();
        if self.alerts.is_empty() {
            judged.result = ControlResult::NotApplicable;
            judged.reason = "no alert.triggered event in the period: no alert fired, or this build records no alerts".into();
            return judged;
        }
        let mut late = 0;
        for (stream, alert) in &self.alerts {
            let (detail, mut ids, slow) = match alert.acknowledged {
                Some((at, ack)) => {
                    let took = at - alert.triggered_at;
                    (
                        format!("acknowledged after {} minute(s)", took.num_minutes()),
                        vec![alert.triggered, ack],
                        took > ACK_WITHIN,
                    )
                }
                None => {
                    let open = self.end - alert.triggered_at;
                    (
                        format!("not acknowledged, open {} minute(s)", open.num_minutes()),
                        vec![alert.triggered],
                        open > ACK_WITHIN,
                    )
                }
            };
            ids.dedup();
            if slow {
                late += 1;
            }
            judged.finding(stream.clone(), detail, ids);
        }
        let total = self.alerts.len();
        judged.result = if late > 0 {
            ControlResult::Fail
        } else {
            ControlResult::Pass
        };
        judged.reason = format!(
            "{late} of {total} alert(s) not acknowledged within {} minutes",
            ACK_WITHIN.num_minutes()
        );
        judged
    }

    fn audit_chain(&self) -> Judged {
        let mut judged = Judged::default();
        match &self.chain_break {
            Some(broken) => {
                judged.result = ControlResult::Fail;
                judged.reason = format!(
                    "the chain breaks at seq {}: {}",
                    broken.seq.map_or("?".into(), |s| s.to_string()),
                    broken.reason
                );
                judged.finding(
                    "audit_chain".into(),
                    broken.reason.clone(),
                    broken.event_id.into_iter().collect(),
                );
            }
            None => {
                judged.result = ControlResult::Pass;
                judged.reason = format!(
                    "{} linked event(s) verify in the journal, every hash recomputed",
                    self.walker.linked()
                );
                let mut ids = Vec::new();
                if let Some((seq, head)) = self.last_linked {
                    ids.push(head);
                    judged.reason.push_str(&format!("; head at seq {seq}"));
                }
                if let Some(checkpoint) = self.last_checkpoint {
                    ids.push(checkpoint);
                }
                judged.evidence(&ids);
            }
        }
        judged
    }

    fn data_subject_requests(&self) -> Judged {
        let mut judged = Judged::default();
        if self.requests.is_empty() {
            judged.result = ControlResult::NotApplicable;
            judged.reason = "no data-subject request (person.exported, person.erased) was recorded in the period".into();
            return judged;
        }
        for request in &self.requests {
            judged.finding(
                request.kind.clone(),
                format!(
                    "answered at {} for {} user(s); completed when recorded (0 days)",
                    millis(request.at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    request.users
                ),
                vec![request.event],
            );
        }
        judged.findings_total = self.requests_total;
        judged.result = ControlResult::Pass;
        judged.reason = format!(
            "{} request(s) in the period, each completed in the transaction that recorded it (within the 30 days of Art. 12(3))",
            self.requests_total
        );
        judged
    }
}

fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// A control's result and evidence, before it is named.
struct Judged {
    result: ControlResult,
    reason: String,
    findings: Vec<ComplianceFinding>,
    findings_total: u64,
    evidence: Vec<Uuid>,
    evidence_seen: BTreeSet<Uuid>,
}

impl Default for Judged {
    fn default() -> Self {
        Self {
            result: ControlResult::Pass,
            reason: String::new(),
            findings: Vec::new(),
            findings_total: 0,
            evidence: Vec::new(),
            evidence_seen: BTreeSet::new(),
        }
    }
}

impl Judged {
    fn finding(&mut self, subject: String, detail: String, mut evidence: Vec<Uuid>) {
        evidence.truncate(MAX_FINDING_EVIDENCE);
        self.evidence(&evidence);
        self.findings_total += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(ComplianceFinding {
                subject,
                detail,
                evidence,
            });
        }
    }

    fn evidence(&mut self, ids: &[Uuid]) {
        for id in ids {
            if self.evidence_seen.insert(*id) && self.evidence.len() < MAX_EVIDENCE {
                self.evidence.push(*id);
            }
        }
    }

    /// Fail when anything was found, pass otherwise.
    fn decide(&mut self, failed: String, passed: String) {
        if self.findings_total > 0 {
            self.result = ControlResult::Fail;
            self.reason = failed;
        } else {
            self.result = ControlResult::Pass;
            self.reason = passed;
        }
    }

    fn control(
        self,
        id: &str,
        reference: &str,
        title: &str,
        description: &str,
    ) -> ComplianceControl {
        ComplianceControl {
            id: id.to_string(),
            reference: reference.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            result: self.result,
            reason: self.reason,
            findings: self.findings,
            findings_total: self.findings_total,
            evidence: self.evidence,
            evidence_total: self.evidence_seen.len() as u64,
        }
    }
}

/// The platform's checks; each framework maps some of them onto its own controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    AccessReview,
    KeyExpiry,
    StaleKeys,
    DepartedUserKeys,
    FailedAuthBursts,
    AlertAcknowledgement,
    AuditChain,
    DataSubjectRequests,
}

impl Check {
    pub fn id(self) -> &'static str {
        match self {
            Check::AccessReview => "access_review",
            Check::KeyExpiry => "key_expiry",
            Check::StaleKeys => "stale_keys",
            Check::DepartedUserKeys => "departed_user_keys",
            Check::FailedAuthBursts => "failed_auth_bursts",
            Check::AlertAcknowledgement => "alert_acknowledgement",
            Check::AuditChain => "audit_chain",
            Check::DataSubjectRequests => "data_subject_requests",
        }
    }
}

fn describe(check: Check) -> (&'static str, &'static str) {
    match check {
        Check::AccessReview => (
            "Access review of privileged roles",
            "Lists who holds owner and admin at the end of the period, and every grant and removal of them in the period. Fails when the organization has no owner, or when a change was made by no identified actor.",
        ),
        Check::KeyExpiry => (
            "API keys expire",
            "Fails for each key active at the end of the period that has no expiry.",
        ),
        Check::StaleKeys => (
            "Unused API keys are retired",
            "Fails for each key active at the end of the period that was neither created nor used for a chat call in the 90 days before it.",
        ),
        Check::DepartedUserKeys => (
            "Access is removed when people leave",
            "Fails for each key still active at the end of the period whose owner held a role and holds none any more, or was erased.",
        ),
        Check::FailedAuthBursts => (
            "Failed authentications are monitored",
            "auth.failed events (refused keys of this organization, counted per reason and key over a few seconds) in the period; fails for each burst of 20 or more failures within 5 minutes, to be reviewed. Garbage keys that name no key of this organization are on the platform's chain, not here.",
        ),
        Check::AlertAcknowledgement => (
            "Alerts are acknowledged in time",
            "Each alert.triggered in the period and its alert.acknowledged; fails when one waited more than 60 minutes. Not applicable when no alert fired.",
        ),
        Check::AuditChain => (
            "The audit trail is complete and unaltered",
            "The organization's SHA-256 chain, read from the journal up to the request: every link and content hash recomputed, every checkpoint matched (and its Ed25519 signature checked when the platform has a signing key). `aihub audit verify` also compares the topic and the audit read model.",
        ),
        Check::DataSubjectRequests => (
            "Data-subject requests are answered",
            "person.exported (access) and person.erased (erasure) events in the period, and their completion. Not applicable when none was recorded.",
        ),
    }
}

/// The controls of a framework, in order, with the framework's reference for each.
pub fn checks(framework: ComplianceFramework) -> &'static [(Check, &'static str)] {
    use Check::*;
    match framework {
        ComplianceFramework::Soc2 => &[
            (AccessReview, "CC6.2, CC6.3"),
            (KeyExpiry, "CC6.1"),
            (StaleKeys, "CC6.1, CC6.2"),
            (DepartedUserKeys, "CC6.2, CC6.3"),
            (FailedAuthBursts, "CC7.2"),
            (AlertAcknowledgement, "CC7.3, CC7.4"),
            (AuditChain, "CC4.1, CC7.2"),
        ],
        ComplianceFramework::Gdpr => &[
            (DataSubjectRequests, "Art. 12(3), 15, 17"),
            (AccessReview, "Art. 5(1)(f), 32(1)(b)"),
            (KeyExpiry, "Art. 32(1)(b)"),
            (StaleKeys, "Art. 32(1)(b)"),
            (DepartedUserKeys, "Art. 32(1)(b), 32(4)"),
            (FailedAuthBursts, "Art. 32(1)(d), 33"),
            (AlertAcknowledgement, "Art. 33(1)"),
            (AuditChain, "Art. 5(2), 30"),
        ],
        ComplianceFramework::Iso27001 => &[
            (AccessReview, "A.5.15, A.5.18, A.8.2"),
            (KeyExpiry, "A.5.17"),
            (StaleKeys, "A.5.18"),
            (DepartedUserKeys, "A.5.18, A.6.5"),
            (FailedAuthBursts, "A.8.5, A.8.16"),
            (AlertAcknowledgement, "A.5.25, A.5.26"),
            (AuditChain, "A.8.15"),
            (DataSubjectRequests, "A.5.34"),
        ],
        ComplianceFramework::Hipaa => &[
            (AccessReview, "§164.308(a)(4)(ii)(C)"),
            (KeyExpiry, "§164.312(d)"),
            (StaleKeys, "§164.308(a)(5)(ii)(D)"),
            (DepartedUserKeys, "§164.308(a)(3)(ii)(C)"),
            (
                FailedAuthBursts,
                "§164.308(a)(1)(ii)(D), §164.308(a)(5)(ii)(C)",
            ),
            (AlertAcknowledgement, "§164.308(a)(6)(ii)"),
            (AuditChain, "§164.312(b), §164.312(c)(1)"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORG: &str = "0193a000-0000-7000-8000-000000000001";

    /// A chain of envelopes, linked as the journal's trigger links them.
    struct Chain {
        prev: [u8; 32],
        seq: i64,
        events: Vec<Value>,
    }

    impl Chain {
        fn new() -> Self {
            Self {
                prev: [0; 32],
                seq: 0,
                events: Vec::new(),
            }
        }

        fn push(&mut self, at: &str, event_type: &str, stream: &str, data: Value) -> Uuid {
            let id = Uuid::now_v7();
            let mut envelope = json!({
                "event_id": id, "event_type": event_type, "schema_version": 1,
                "org_id": ORG, "stream_id": stream, "stream_version": 1,
                "occurred_at": at, "actor": {"type": "api_key", "id": "api_key:x"},
                "correlation_id": "c", "data": data,
            });
            self.seq += 1;
            let hash = events::audit::link(&self.prev, &events::audit::content_hash(&envelope));
            envelope["chain"] = json!({
                "seq": self.seq, "prev": hex::encode(self.prev), "hash": hex::encode(hash)
            });
            self.prev = hash;
            self.events.push(envelope);
            id
        }
    }

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn run(chain: &Chain, framework: ComplianceFramework) -> ComplianceReportContent {
        let period = Period {
            from: at("2026-11-01T00:00:00Z"),
            to: at("2026-12-01T00:00:00Z"),
        };
        let mut evaluator =
            Evaluator::new(framework, period, at("2026-11-27T12:00:00Z"), ORG, None);
        for event in &chain.events {
            evaluator.push(event);
        }
        evaluator.finish(
            Uuid::nil(),
            Uuid::nil(),
            "2026-11",
            at("2026-11-27T12:00:00Z"),
            chain.seq,
        )
    }

    fn control<'a>(report: &'a ComplianceReportContent, id: &str) -> &'a ComplianceControl {
        report
            .controls
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| unreachable!("no control {id}"))
    }

    #[test]
    fn a_seeded_history_passes_and_fails_as_it_should() {
        let mut chain = Chain::new();
        let owner = Uuid::now_v7();
        let admin = Uuid::now_v7();
        let owned = chain.push(
            "2026-06-01T00:00:00Z",
            "organization.owner_added",
            &format!("organization:{ORG}"),
            json!({"user_id": owner}),
        );
        // A key created in June, never used: stale by November 27 (179 days).
        let stale = Uuid::now_v7();
        chain.push(
            "2026-06-01T00:00:01Z",
            "api_key.created",
            &format!("api_key:{stale}"),
            json!({"owner_user_id": owner, "expires_at": "2027-06-01T00:00:00Z"}),
        );
        // The admin joins in the period, gets a key without expiry, and is removed.
        let granted = chain.push(
            "2026-11-02T00:00:00Z",
            "user.role_assigned",
            &format!("user:{admin}"),
            json!({"role": "admin"}),
        );
        let admin_key = Uuid::now_v7();
        let created = chain.push(
            "2026-11-02T00:01:00Z",
            "api_key.created",
            &format!("api_key:{admin_key}"),
            json!({"owner_user_id": admin}),
        );
        let removed = chain.push(
            "2026-11-03T00:00:00Z",
            "user.role_removed",
            &format!("user:{admin}"),
            json!({"role": "admin"}),
        );
        // A used key with an expiry: neither finding.
        let fine = Uuid::now_v7();
        chain.push(
            "2026-11-04T00:00:00Z",
            "api_key.created",
            &format!("api_key:{fine}"),
            json!({"owner_user_id": owner, "expires_at": "2027-01-01T00:00:00Z"}),
        );
        chain.push(
            "2026-11-05T00:00:00Z",
            "chat.completion.succeeded",
            "chat:1",
            json!({"api_key_id": fine}),
        );
        // 25 failures within two minutes: one burst.
        let first_failure = chain.push(
            "2026-11-06T10:00:00Z",
            "auth.failed",
            "auth_failure:1",
            json!({"count": 10}),
        );
        chain.push(
            "2026-11-06T10:01:00Z",
            "auth.failed",
            "auth_failure:2",
            json!({"count": 15}),
        );
        // Scattered failures: no burst.
        chain.push(
            "2026-11-08T10:00:00Z",
            "auth.failed",
            "auth_failure:3",
            json!({"count": 5}),
        );
        chain.push(
            "2026-11-09T10:00:00Z",
            "auth.failed",
            "auth_failure:4",
            json!({"count": 5}),
        );

        let report = run(&chain, ComplianceFramework::Soc2);
        let review = control(&report, "access_review");
        assert_eq!(review.result, ControlResult::Pass, "{}", review.reason);
        for id in [owned, granted, removed] {
            assert!(
                review.evidence.contains(&id),
                "{id} in {:?}",
                review.evidence
            );
        }
        let expiry = control(&report, "key_expiry");
        assert_eq!(expiry.result, ControlResult::Fail);
        assert_eq!(expiry.findings.len(), 1);
        assert_eq!(expiry.findings[0].subject, format!("api_key:{admin_key}"));
        assert_eq!(expiry.findings[0].evidence, vec![created]);
        let stale_control = control(&report, "stale_keys");
        assert_eq!(stale_control.result, ControlResult::Fail);
        assert_eq!(stale_control.findings.len(), 1);
        assert_eq!(
            stale_control.findings[0].subject,
            format!("api_key:{stale}")
        );
        let departed = control(&report, "departed_user_keys");
        assert_eq!(departed.result, ControlResult::Fail);
        assert_eq!(departed.findings[0].subject, format!("api_key:{admin_key}"));
        assert!(departed.evidence.contains(&removed) && departed.evidence.contains(&created));
        let bursts = control(&report, "failed_auth_bursts");
        assert_eq!(bursts.result, ControlResult::Fail);
        assert_eq!(bursts.findings_total, 1);
        assert!(bursts.evidence.contains(&first_failure));
        assert_eq!(
            control(&report, "alert_acknowledgement").result,
            ControlResult::NotApplicable
        );
        let chained = control(&report, "audit_chain");
        assert_eq!(chained.result, ControlResult::Pass, "{}", chained.reason);
        assert_eq!(
            report.summary,
            ComplianceSummary {
                pass: 2,
                fail: 4,
                not_applicable: 1
            }
        );
        // GDPR maps the same checks and adds the data-subject requests (none here).
        let gdpr = run(&chain, ComplianceFramework::Gdpr);
        assert_eq!(
            control(&gdpr, "data_subject_requests").result,
            ControlResult::NotApplicable
        );
        assert_eq!(gdpr.controls.len(), 8);
    }

    #[test]
    fn revoking_and_expiring_and_acknowledging_pass() {
        let mut chain = Chain::new();
        let owner = Uuid::now_v7();
        chain.push(
            "2026-11-01T00:00:00Z",
            "organization.owner_added",
            &format!("organization:{ORG}"),
            json!({"user_id": owner}),
        );
        let admin = Uuid::now_v7();
        chain.push(
            "2026-11-02T00:00:00Z",
            "user.role_assigned",
            &format!("user:{admin}"),
            json!({"role": "admin"}),
        );
        let key = Uuid::now_v7();
        chain.push(
            "2026-11-02T00:01:00Z",
            "api_key.created",
            &format!("api_key:{key}"),
            json!({"owner_user_id": admin}),
        );
        chain.push(
            "2026-11-02T00:02:00Z",
            "api_key.updated",
            &format!("api_key:{key}"),
            json!({"expires_at": "2027-01-01T00:00:00Z"}),
        );
        chain.push(
            "2026-11-03T00:00:00Z",
            "user.role_removed",
            &format!("user:{admin}"),
            json!({"role": "admin"}),
        );
        chain.push(
            "2026-11-03T00:00:01Z",
            "api_key.revoked",
            &format!("api_key:{key}"),
            json!({}),
        );
        let triggered = chain.push(
            "2026-11-04T00:00:00Z",
            "alert.triggered",
            "alert:1",
            json!({}),
        );
        let acked = chain.push(
            "2026-11-04T00:10:00Z",
            "alert.acknowledged",
            "alert:1",
            json!({}),
        );
        let erased = chain.push(
            "2026-11-05T00:00:00Z",
            "person.erased",
            "person:1",
            json!({"user_ids": [admin], "key_ids": []}),
        );
        let report = run(&chain, ComplianceFramework::Iso27001);
        for id in [
            "access_review",
            "key_expiry",
            "stale_keys",
            "departed_user_keys",
            "failed_auth_bursts",
            "alert_acknowledgement",
            "audit_chain",
            "data_subject_requests",
        ] {
            assert_eq!(
                control(&report, id).result,
                ControlResult::Pass,
                "{id}: {}",
                control(&report, id).reason
            );
        }
        assert_eq!(
            control(&report, "alert_acknowledgement").evidence,
            vec![triggered, acked]
        );
        assert_eq!(
            control(&report, "data_subject_requests").evidence,
            vec![erased]
        );
    }

    #[test]
    fn an_altered_event_fails_the_chain_naming_it() {
        let mut chain = Chain::new();
        chain.push(
            "2026-11-01T00:00:00Z",
            "organization.owner_added",
            &format!("organization:{ORG}"),
            json!({"user_id": Uuid::now_v7()}),
        );
        let altered = chain.push(
            "2026-11-02T00:00:00Z",
            "team.created",
            "team:1",
            json!({"name": "a"}),
        );
        chain.events[1]["data"]["name"] = json!("b");
        let report = run(&chain, ComplianceFramework::Soc2);
        let chained = control(&report, "audit_chain");
        assert_eq!(chained.result, ControlResult::Fail);
        assert_eq!(chained.evidence, vec![altered]);
    }

    #[test]
    fn an_organization_without_owner_fails_the_review() {
        let mut chain = Chain::new();
        let owner = Uuid::now_v7();
        chain.push(
            "2026-11-01T00:00:00Z",
            "organization.owner_added",
            &format!("organization:{ORG}"),
            json!({"user_id": owner}),
        );
        chain.push(
            "2026-11-02T00:00:00Z",
            "organization.owner_removed",
            &format!("organization:{ORG}"),
            json!({"user_id": owner}),
        );
        let report = run(&chain, ComplianceFramework::Hipaa);
        assert_eq!(
            control(&report, "access_review").result,
            ControlResult::Fail
        );
        assert!(report
            .controls
            .iter()
            .all(|c| c.id != "data_subject_requests"));
    }
}
