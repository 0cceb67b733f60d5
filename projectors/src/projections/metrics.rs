//! Built-in monitoring metrics: every `chat.completion.*` event is folded into buckets of one
//! minute, one hour and one day per organization, at the finest grouping the API offers (model,
//! provider, API key, team, user), in `read.chat_metrics`. Counters add; latency and time to
//! first token are sketches that merge exactly (`platform::sketch`).
//!
//! Beside each bucket's detailed rows, `read.chat_metrics_rollup` holds the bucket with every
//! dimension folded ([`rollup`]), so an ungrouped series reads one row per bucket.
//!
//! A batch is folded in memory first ([`fold`], pure), so a busy minute costs one row update per
//! batch rather than one per call; the sketches of the touched rows of both tables are then read,
//! merged and written back in the runner's transaction: four statements for the whole batch,
//! pipelined in two round trips.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::chat::ChatCall;
use events::{EventEnvelope, EventPayload};
use futures::future::BoxFuture;
use futures::FutureExt;
use platform::sketch::Sketch;
use uuid::Uuid;

use crate::{Fold, Projection, Sql};

pub struct Metrics;

/// The bucket sizes every call is counted in, in seconds: a minute, an hour, a day (UTC).
pub const STEPS: [i32; 3] = [60, 3_600, 86_400];

/// The error code of a call the monthly quota refused.
const QUOTA_REFUSED: &str = "insufficient_quota";

/// One row of `read.chat_metrics`: an organization's bucket at the finest grouping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub org_id: Uuid,
    pub step: i32,
    pub bucket: DateTime<Utc>,
    pub model: String,
    pub provider: Option<String>,
    pub api_key_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

/// What a bucket holds.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost_micros: i64,
    pub quota_refusals: i64,
    pub failovers: i64,
    pub latency_ms: Sketch,
    pub ttft_ms: Option<Sketch>,
}

impl Cell {
    fn merge(&mut self, other: &Cell) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cost_micros += other.cost_micros;
        self.quota_refusals += other.quota_refusals;
        self.failovers += other.failovers;
        self.latency_ms.merge(&other.latency_ms);
        if let Some(theirs) = &other.ttft_ms {
            self.ttft_ms.get_or_insert_with(Sketch::new).merge(theirs);
        }
    }
}

/// The start of the `step`-second bucket holding `at` (UTC; days start at midnight).
pub fn bucket_of(at: DateTime<Utc>, step: i32) -> DateTime<Utc> {
    let secs = at.timestamp();
    let start = secs - secs.rem_euclid(i64::from(step));
    DateTime::from_timestamp(start, 0).unwrap_or(at)
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What one chat event adds to each cell it counts in.
struct Contribution<'e> {
    org_id: Uuid,
    call: &'e ChatCall,
    /// The provider that answered, or that a failed call reached last; none when it was
    /// refused before reaching any.
    provider: Option<&'e str>,
    error: bool,
    quota_refused: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cost_micros: i64,
    ttft_ms: Option<f64>,
}

impl Cell {
    /// Counts one call. Its latency and time to first token go straight into the cell's
    /// sketches: the same bins, count, sum, min and max as merging a sketch of the one value,
    /// without building that sketch three times over (once per step).
    fn add(&mut self, c: &Contribution<'_>) {
        self.requests += 1;
        self.errors += i64::from(c.error);
        self.quota_refusals += i64::from(c.quota_refused);
        self.prompt_tokens += c.prompt_tokens;
        self.completion_tokens += c.completion_tokens;
        self.total_tokens += c.total_tokens;
        self.cost_micros += c.cost_micros;
        self.failovers += c.call.attempts.len().saturating_sub(1) as i64;
        self.latency_ms.add(c.call.latency_ms as f64);
        if let Some(ttft) = c.ttft_ms {
            self.ttft_ms.get_or_insert_with(Sketch::new).add(ttft);
        }
    }
}

/// What one chat event adds, and the grouping it adds it under; `None` for other events.
fn contribution(event: &EventEnvelope) -> Option<Contribution<'_>> {
    let org_id = event.org_id?;
    Some(match &event.payload {
        EventPayload::ChatCompletionSucceeded(e) => Contribution {
            org_id,
            call: &e.call,
            provider: Some(e.provider.as_str()),
            error: false,
            quota_refused: false,
            prompt_tokens: tokens(e.prompt_tokens),
            completion_tokens: tokens(e.completion_tokens),
            total_tokens: tokens(e.total_tokens),
            cost_micros: e.cost_micros,
            ttft_ms: e.time_to_first_token_ms.map(|t| t as f64),
        },
        EventPayload::ChatCompletionFailed(e) => Contribution {
            org_id,
            call: &e.call,
            provider: e.call.attempts.last().map(|a| a.provider.as_str()),
            error: true,
            quota_refused: e.error_code == QUOTA_REFUSED,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cost_micros: 0,
            ttft_ms: None,
        },
        _ => return None,
    })
}

/// Folds a batch of events into the cells it changes, one per (bucket, grouping) and step.
pub fn fold(events: &[&EventEnvelope]) -> BTreeMap<Key, Cell> {
    let mut cells: BTreeMap<Key, Cell> = BTreeMap::new();
    for event in events {
        let Some(c) = contribution(event) else {
            continue;
        };
        for step in STEPS {
            let key = Key {
                org_id: c.org_id,
                step,
                bucket: bucket_of(*event.occurred_at, step),
                model: c.call.model.clone(),
                provider: c.provider.map(str::to_string),
                api_key_id: c.call.api_key_id,
                team_id: c.call.team_id,
                user_id: c.call.user_id,
            };
            cells.entry(key).or_default().add(&c);
        }
    }
    cells
}

/// One row of `read.chat_metrics_rollup`: an organization's bucket, every dimension folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    pub org_id: Uuid,
    pub step: i32,
    pub bucket: DateTime<Utc>,
}

/// The folded cells summed over their dimensions: what the batch adds to each bucket's rollup.
pub fn rollup(cells: &BTreeMap<Key, Cell>) -> BTreeMap<RollupKey, Cell> {
    let mut rolled: BTreeMap<RollupKey, Cell> = BTreeMap::new();
    for (key, cell) in cells {
        rolled
            .entry(RollupKey {
                org_id: key.org_id,
                step: key.step,
                bucket: key.bucket,
            })
            .or_default()
            .merge(cell);
    }
    rolled
}

/// The touched rows' stored sketches, locked for the rest of the transaction.
const STORED: &str = "SELECT k.n, m.latency_ms, m.ttft_ms
    FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::uuid[], $7::uuid[], $8::uuid[])
         WITH ORDINALITY AS k(org_id, step, bucket, model, provider, api_key_id, team_id, user_id, n)
    JOIN read.chat_metrics m ON m.org_id = k.org_id AND m.step = k.step AND m.bucket = k.bucket
         AND m.model = k.model AND m.provider IS NOT DISTINCT FROM k.provider
         AND m.api_key_id IS NOT DISTINCT FROM k.api_key_id AND m.team_id IS NOT DISTINCT FROM k.team_id
         AND m.user_id IS NOT DISTINCT FROM k.user_id
    FOR UPDATE OF m";

/// Counters are added in SQL; the sketches given are already merged with the stored ones.
const UPSERT: &str = "INSERT INTO read.chat_metrics (org_id, step, bucket, model, provider, api_key_id, team_id,
        user_id, requests, errors, prompt_tokens, completion_tokens, total_tokens, cost_micros, quota_refusals,
        failovers, latency_ms, ttft_ms)
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::uuid[], $7::uuid[],
        $8::uuid[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
        $15::bigint[], $16::bigint[], $17::bytea[], $18::bytea[])
    ON CONFLICT (org_id, step, bucket, model, provider, api_key_id, team_id, user_id) DO UPDATE SET
        requests = chat_metrics.requests + EXCLUDED.requests,
        errors = chat_metrics.errors + EXCLUDED.errors,
        prompt_tokens = chat_metrics.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = chat_metrics.completion_tokens + EXCLUDED.completion_tokens,
        total_tokens = chat_metrics.total_tokens + EXCLUDED.total_tokens,
        cost_micros = chat_metrics.cost_micros + EXCLUDED.cost_micros,
        quota_refusals = chat_metrics.quota_refusals + EXCLUDED.quota_refusals,
        failovers = chat_metrics.failovers + EXCLUDED.failovers,
        latency_ms = EXCLUDED.latency_ms,
        ttft_ms = EXCLUDED.ttft_ms";

/// `STORED` for the rollup rows.
const STORED_ROLLUP: &str = "SELECT k.n, m.latency_ms, m.ttft_ms
    FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) WITH ORDINALITY AS k(org_id, step, bucket, n)
    JOIN read.chat_metrics_rollup m ON m.org_id = k.org_id AND m.step = k.step AND m.bucket = k.bucket
    FOR UPDATE OF m";

/// `UPSERT` for the rollup rows, with each bucket's percentiles as its merged sketches give them.
const UPSERT_ROLLUP: &str = "INSERT INTO read.chat_metrics_rollup (org_id, step, bucket, requests, errors,
        prompt_tokens, completion_tokens, total_tokens, cost_micros, quota_refusals, failovers, latency_ms, ttft_ms,
        latency_p50, latency_p95, latency_p99, ttft_p50, ttft_p95, ttft_p99)
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[],
        $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[], $13::bytea[],
        $14::float8[], $15::float8[], $16::float8[], $17::float8[], $18::float8[], $19::float8[])
    ON CONFLICT (org_id, step, bucket) DO UPDATE SET
        requests = chat_metrics_rollup.requests + EXCLUDED.requests,
        errors = chat_metrics_rollup.errors + EXCLUDED.errors,
        prompt_tokens = chat_metrics_rollup.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = chat_metrics_rollup.completion_tokens + EXCLUDED.completion_tokens,
        total_tokens = chat_metrics_rollup.total_tokens + EXCLUDED.total_tokens,
        cost_micros = chat_metrics_rollup.cost_micros + EXCLUDED.cost_micros,
        quota_refusals = chat_metrics_rollup.quota_refusals + EXCLUDED.quota_refusals,
        failovers = chat_metrics_rollup.failovers + EXCLUDED.failovers,
        latency_ms = EXCLUDED.latency_ms,
        ttft_ms = EXCLUDED.ttft_ms,
        latency_p50 = EXCLUDED.latency_p50,
        latency_p95 = EXCLUDED.latency_p95,
        latency_p99 = EXCLUDED.latency_p99,
        ttft_p50 = EXCLUDED.ttft_p50,
        ttft_p95 = EXCLUDED.ttft_p95,
        ttft_p99 = EXCLUDED.ttft_p99";

/// The quantiles a rollup row holds beside its sketches, in `UPSERT_ROLLUP`'s column order.
pub const ROLLUP_QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Each rollup cell's latency and time-to-first-token quantiles, as float arrays: the last six
/// parameters of `UPSERT_ROLLUP`.
fn quantile_columns(cells: &[Cell]) -> Vec<Vec<Option<f64>>> {
    let latency = ROLLUP_QUANTILES
        .iter()
        .map(|q| cells.iter().map(|c| c.latency_ms.quantile(*q)).collect());
    let ttft = ROLLUP_QUANTILES.iter().map(|q| {
        cells
            .iter()
            .map(|c| c.ttft_ms.as_ref().and_then(|s| s.quantile(*q)))
            .collect()
    });
    latency.chain(ttft).collect()
}

/// The keys' columns as arrays, in the order of `STORED`'s and `UPSERT`'s first eight parameters.
struct KeyColumns {
    org_id: Vec<Uuid>,
    step: Vec<i32>,
    bucket: Vec<DateTime<Utc>>,
    model: Vec<String>,
    provider: Vec<Option<String>>,
    api_key_id: Vec<Option<Uuid>>,
    team_id: Vec<Option<Uuid>>,
    user_id: Vec<Option<Uuid>>,
}

impl KeyColumns {
    fn of<'k>(keys: impl Iterator<Item = &'k Key>) -> Self {
        let mut c = KeyColumns {
            org_id: vec![],
            step: vec![],
            bucket: vec![],
            model: vec![],
            provider: vec![],
            api_key_id: vec![],
            team_id: vec![],
            user_id: vec![],
        };
        for k in keys {
            c.org_id.push(k.org_id);
            c.step.push(k.step);
            c.bucket.push(k.bucket);
            c.model.push(k.model.clone());
            c.provider.push(k.provider.clone());
            c.api_key_id.push(k.api_key_id);
            c.team_id.push(k.team_id);
            c.user_id.push(k.user_id);
        }
        c
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.org_id,
            &self.step,
            &self.bucket,
            &self.model,
            &self.provider,
            &self.api_key_id,
            &self.team_id,
            &self.user_id,
        ]
    }
}

/// The rollup keys' columns as arrays: `STORED_ROLLUP`'s and `UPSERT_ROLLUP`'s first three.
struct RollupColumns {
    org_id: Vec<Uuid>,
    step: Vec<i32>,
    bucket: Vec<DateTime<Utc>>,
}

impl RollupColumns {
    fn of(keys: &[RollupKey]) -> Self {
        RollupColumns {
            org_id: keys.iter().map(|k| k.org_id).collect(),
            step: keys.iter().map(|k| k.step).collect(),
            bucket: keys.iter().map(|k| k.bucket).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 3] {
        [&self.org_id, &self.step, &self.bucket]
    }
}

/// The cells' value columns as arrays, in the order the upserts take them after the keys.
struct CellColumns {
    counters: [Vec<i64>; 8],
    latency: Vec<Vec<u8>>,
    ttft: Vec<Option<Vec<u8>>>,
}

impl CellColumns {
    fn of(cells: &[Cell]) -> Self {
        let column = |f: fn(&Cell) -> i64| cells.iter().map(f).collect::<Vec<i64>>();
        CellColumns {
            counters: [
                column(|c| c.requests),
                column(|c| c.errors),
                column(|c| c.prompt_tokens),
                column(|c| c.completion_tokens),
                column(|c| c.total_tokens),
                column(|c| c.cost_micros),
                column(|c| c.quota_refusals),
                column(|c| c.failovers),
            ],
            latency: cells.iter().map(|c| c.latency_ms.encode()).collect(),
            ttft: cells
                .iter()
                .map(|c| c.ttft_ms.as_ref().map(Sketch::encode))
                .collect(),
        }
    }

    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = self
            .counters
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        params.push(&self.latency);
        params.push(&self.ttft);
        params
    }
}

/// Merges the stored sketches (`n`, latency, ttft rows of a `STORED` query, `n` counting the
/// cells from 1) into the batch's cells, which then hold what the rows will.
fn merge_stored(rows: &[tokio_postgres::Row], cells: &mut [Cell]) -> anyhow::Result<()> {
    for row in rows {
        let n: i64 = row.get(0);
        let Some(cell) = usize::try_from(n - 1).ok().and_then(|i| cells.get_mut(i)) else {
            continue;
        };
        let mut merged = Sketch::decode(row.get::<_, &[u8]>(1))?;
        merged.merge(&cell.latency_ms);
        cell.latency_ms = merged;
        if let Some(ttft) = row.get::<_, Option<&[u8]>>(2) {
            let mut merged = Sketch::decode(ttft)?;
            if let Some(mine) = &cell.ttft_ms {
                merged.merge(mine);
            }
            cell.ttft_ms = Some(merged);
        }
    }
    Ok(())
}

/// Writes the batch's cells and their rollup: the stored sketches of both tables are read in one
/// round trip (two statements pipelined), merged, and both upserts sent in another.
async fn write(
    tx: &platform::db::Transaction<'_>,
    cells: BTreeMap<Key, Cell>,
) -> anyhow::Result<()> {
    if cells.is_empty() {
        return Ok(());
    }
    let (rollup_keys, mut rollup_cells): (Vec<RollupKey>, Vec<Cell>) =
        rollup(&cells).into_iter().unzip();
    let (keys, mut cells): (Vec<Key>, Vec<Cell>) = cells.into_iter().unzip();
    let columns = KeyColumns::of(keys.iter());
    let rollup_columns = RollupColumns::of(&rollup_keys);
    let (stored, upsert, stored_rollup, upsert_rollup) = futures::try_join!(
        tx.prepare_cached(STORED),
        tx.prepare_cached(UPSERT),
        tx.prepare_cached(STORED_ROLLUP),
        tx.prepare_cached(UPSERT_ROLLUP),
    )?;
    let (key_params, rollup_key_params) = (columns.params(), rollup_columns.params());
    let (rows, rollup_rows) = futures::try_join!(
        tx.query(&stored, &key_params),
        tx.query(&stored_rollup, &rollup_key_params),
    )?;
    merge_stored(&rows, &mut cells)?;
    merge_stored(&rollup_rows, &mut rollup_cells)?;
    let values = CellColumns::of(&cells);
    let rollup_values = CellColumns::of(&rollup_cells);
    let mut params = columns.params().to_vec();
    params.extend(values.params());
    let rollup_quantiles = quantile_columns(&rollup_cells);
    let mut rollup_params = rollup_columns.params().to_vec();
    rollup_params.extend(rollup_values.params());
    rollup_params.extend(
        rollup_quantiles
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    futures::try_join!(
        tx.execute(&upsert, &params),
        tx.execute(&upsert_rollup, &rollup_params),
    )?;
    Ok(())
}

impl Fold for Metrics {
    fn apply<'a>(
        &'a self,
        tx: &'a platform::db::Transaction<'a>,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            write(tx, fold(events)).await?;
            super::custom_metrics::apply_live(tx, events).await
        }
        .boxed()
    }
}

impl Projection for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "read.chat_metrics",
            "read.chat_metrics_rollup",
            "read.custom_metrics",
            "read.custom_metric_values",
            "read.custom_metric_distinct",
            "read.meter_backfill_applied",
            "read.health_checks",
        ]
    }

    /// Health checks: their definitions and each one's latest outcome.
    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let Some(org_id) = event.org_id else {
            return vec![];
        };
        match &event.payload {
            EventPayload::HealthCheckDefined(d) => vec![Sql::new(
                "INSERT INTO read.health_checks (id, org_id, name, target, interval_seconds, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                vec![
                    Box::new(d.check_id),
                    Box::new(org_id),
                    Box::new(d.name.clone()),
                    Box::new(serde_json::to_value(&d.target).unwrap_or_default()),
                    Box::new(i32::try_from(d.interval_seconds).unwrap_or(i32::MAX)),
                    Box::new(*event.occurred_at),
                ],
            )],
            EventPayload::HealthCheckDeleted(d) => vec![Sql::new(
                "DELETE FROM read.health_checks WHERE id = $1 AND org_id = $2",
                vec![Box::new(d.check_id), Box::new(org_id)],
            )],
            // Outcomes may arrive out of time order across processes: the latest run wins.
            EventPayload::HealthCheckCompleted(c) => vec![Sql::new(
                "UPDATE read.health_checks SET
                    last_run_at = CASE WHEN last_run_at IS NULL OR last_run_at <= $3 THEN $3 ELSE last_run_at END,
                    last_ok = CASE WHEN last_run_at IS NULL OR last_run_at <= $3 THEN $4 ELSE last_ok END,
                    last_latency_ms = CASE WHEN last_run_at IS NULL OR last_run_at <= $3 THEN $5 ELSE last_latency_ms END,
                    last_status = CASE WHEN last_run_at IS NULL OR last_run_at <= $3 THEN $6 ELSE last_status END,
                    last_error = CASE WHEN last_run_at IS NULL OR last_run_at <= $3 THEN $7 ELSE last_error END,
                    runs = runs + 1,
                    failures = failures + CASE WHEN $4 THEN 0 ELSE 1 END
                 WHERE id = $1 AND org_id = $2",
                vec![
                    Box::new(c.check_id),
                    Box::new(org_id),
                    Box::new(*event.occurred_at),
                    Box::new(c.ok),
                    Box::new(i64::try_from(c.latency_ms).unwrap_or(i64::MAX)),
                    Box::new(c.status.map(i32::from)),
                    Box::new(c.error.clone()),
                ],
            )],
            _ => vec![],
        }
    }

    fn fold(&self) -> Option<&dyn Fold> {
        Some(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use events::chat::{Attempt, ChatCompletionFailed, ChatCompletionSucceeded};
    use events::{Actor, StreamId, Timestamp};

    fn call(model: &str, attempts: usize, latency_ms: u64) -> ChatCall {
        ChatCall {
            request_id: "req".into(),
            api_key_id: Some(Uuid::from_u128(7)),
            team_id: None,
            user_id: Some(Uuid::from_u128(9)),
            model: model.into(),
            streamed: false,
            attempts: (0..attempts)
                .map(|i| Attempt {
                    provider: if i == 0 { "openrouter" } else { "gemini" }.into(),
                    upstream_model: "m".into(),
                    outcome: "ok".into(),
                    latency_ms,
                })
                .collect(),
            latency_ms,
        }
    }

    fn event(at: &str, payload: EventPayload) -> EventEnvelope {
        let mut e = EventEnvelope::new(
            payload,
            Some(Uuid::from_u128(1)),
            StreamId::chat(Uuid::now_v7()),
            1,
            Actor::system(),
            "corr".into(),
        );
        e.occurred_at = Timestamp(
            DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
        );
        e
    }

    fn ok(at: &str, model: &str, attempts: usize, latency_ms: u64) -> EventEnvelope {
        event(
            at,
            EventPayload::ChatCompletionSucceeded(ChatCompletionSucceeded {
                call: call(model, attempts, latency_ms),
                provider: "openrouter".into(),
                upstream_model: "m".into(),
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
                cost_micros: 30,
                time_to_first_token_ms: Some(latency_ms / 2),
                client_disconnected: false,
                usage_estimated: false,
            }),
        )
    }

    fn failed(at: &str, code: &str, attempts: usize) -> EventEnvelope {
        event(
            at,
            EventPayload::ChatCompletionFailed(ChatCompletionFailed {
                call: call("gpt-4o", attempts, 40),
                status: 429,
                error_code: code.into(),
            }),
        )
    }

    #[test]
    fn calls_of_one_minute_share_a_cell_and_every_step_counts_them() {
        let events = [
            ok("2026-11-05T10:15:01Z", "gpt-4o", 1, 100),
            ok("2026-11-05T10:15:59.999Z", "gpt-4o", 2, 300),
            ok("2026-11-05T10:16:00Z", "gpt-4o", 1, 200),
        ];
        let refs: Vec<&EventEnvelope> = events.iter().collect();
        let cells = fold(&refs);
        let minutes: Vec<(&Key, &Cell)> = cells.iter().filter(|(k, _)| k.step == 60).collect();
        assert_eq!(minutes.len(), 2);
        let (key, first) = minutes[0];
        assert_eq!(key.bucket.to_rfc3339(), "2026-11-05T10:15:00+00:00");
        assert_eq!(key.provider.as_deref(), Some("openrouter"));
        assert_eq!(key.api_key_id, Some(Uuid::from_u128(7)));
        assert_eq!(
            (first.requests, first.total_tokens, first.cost_micros),
            (2, 30, 60)
        );
        assert_eq!(first.failovers, 1);
        assert_eq!(first.latency_ms.count(), 2);
        assert_eq!(first.ttft_ms.as_ref().map(Sketch::count), Some(2));
        for step in [3_600, 86_400] {
            let cell: Vec<&Cell> = cells
                .iter()
                .filter(|(k, _)| k.step == step)
                .map(|(_, c)| c)
                .collect();
            assert_eq!(cell.len(), 1);
            assert_eq!(cell[0].requests, 3);
            assert_eq!(cell[0].latency_ms.max(), Some(300.0));
        }
    }

    #[test]
    fn failures_count_as_errors_and_quota_refusals_by_their_code() {
        let events = [
            failed("2026-11-05T10:15:01Z", QUOTA_REFUSED, 0),
            failed("2026-11-05T10:15:02Z", "upstream_unavailable", 2),
        ];
        let refs: Vec<&EventEnvelope> = events.iter().collect();
        let cells = fold(&refs);
        let minutes: Vec<(&Key, &Cell)> = cells.iter().filter(|(k, _)| k.step == 60).collect();
        // The refused call reached no provider: its own row.
        assert_eq!(minutes.len(), 2);
        let refused = minutes
            .iter()
            .find(|(k, _)| k.provider.is_none())
            .unwrap()
            .1;
        assert_eq!((refused.errors, refused.quota_refusals), (1, 1));
        let tried = minutes
            .iter()
            .find(|(k, _)| k.provider.as_deref() == Some("gemini"))
            .unwrap()
            .1;
        assert_eq!(
            (tried.errors, tried.quota_refusals, tried.failovers),
            (1, 0, 1)
        );
        assert!(tried.ttft_ms.is_none());
        assert_eq!(tried.total_tokens, 0);
    }

    #[test]
    fn the_rollup_of_a_bucket_folds_every_grouping_of_it() {
        let events = [
            ok("2026-11-05T10:15:01Z", "gpt-4o", 1, 100),
            ok("2026-11-05T10:15:02Z", "gpt-4o-mini", 2, 300),
            failed("2026-11-05T10:15:03Z", QUOTA_REFUSED, 0),
            failed("2026-11-05T10:16:00Z", "upstream_unavailable", 2),
        ];
        let refs: Vec<&EventEnvelope> = events.iter().collect();
        let cells = fold(&refs);
        let rolled = rollup(&cells);
        // Two minutes, one hour, one day.
        assert_eq!(rolled.len(), 4);
        for (key, total) in &rolled {
            let parts: Vec<&Cell> = cells
                .iter()
                .filter(|(k, _)| (k.org_id, k.step, k.bucket) == (key.org_id, key.step, key.bucket))
                .map(|(_, c)| c)
                .collect();
            let sum = |f: fn(&Cell) -> i64| parts.iter().map(|c| f(c)).sum::<i64>();
            assert_eq!(total.requests, sum(|c| c.requests));
            assert_eq!(total.errors, sum(|c| c.errors));
            assert_eq!(total.total_tokens, sum(|c| c.total_tokens));
            assert_eq!(total.quota_refusals, sum(|c| c.quota_refusals));
            assert_eq!(total.failovers, sum(|c| c.failovers));
            assert_eq!(
                total.latency_ms.count(),
                sum(|c| c.latency_ms.count() as i64) as u64
            );
            let mut merged = Sketch::new();
            for part in &parts {
                merged.merge(&part.latency_ms);
            }
            assert_eq!(total.latency_ms.encode(), merged.encode());
        }
        let minute = rolled
            .iter()
            .find(|(k, _)| k.step == 60 && k.bucket.to_rfc3339() == "2026-11-05T10:15:00+00:00")
            .unwrap()
            .1;
        assert_eq!(
            (minute.requests, minute.errors, minute.quota_refusals),
            (3, 1, 1)
        );
        assert_eq!(minute.ttft_ms.as_ref().map(Sketch::count), Some(2));
        let day = rolled.iter().find(|(k, _)| k.step == 86_400).unwrap().1;
        assert_eq!((day.requests, day.errors, day.failovers), (4, 2, 2));
        assert_eq!(day.latency_ms.max(), Some(300.0));
    }

    #[test]
    fn other_events_are_not_counted() {
        let e = event(
            "2026-11-05T10:15:01Z",
            EventPayload::ChatCompletionFailed(ChatCompletionFailed {
                call: call("gpt-4o", 1, 1),
                status: 502,
                error_code: "x".into(),
            }),
        );
        let mut platform_event = e.clone();
        platform_event.org_id = None;
        assert!(fold(&[&platform_event]).is_empty());
    }

    #[test]
    fn buckets_start_at_the_minute_hour_and_midnight() {
        let at = DateTime::parse_from_rfc3339("2026-11-05T23:59:59.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(bucket_of(at, 60).to_rfc3339(), "2026-11-05T23:59:00+00:00");
        assert_eq!(
            bucket_of(at, 3600).to_rfc3339(),
            "2026-11-05T23:00:00+00:00"
        );
        assert_eq!(
            bucket_of(at, 86400).to_rfc3339(),
            "2026-11-05T00:00:00+00:00"
        );
    }
}
