//! Token leases: the hot path of the quota. Each gateway process leases a block of an
//! organization's monthly allowance from the ledger (a `quota_reservations` row counted in
//! `reserved`, with an expiry renewed by every sync) and reserves and settles calls against it in
//! memory, under a mutex per organization and month. The ledger is touched only to grow a lease
//! that cannot cover a call (refusing only when the ledger has nothing left), to write settled
//! usage (every `flush` interval), and to give back a lease idle for `idle`. A crashed process
//! loses at most one flush interval of settled usage from the ledger (the calls' events still
//! bill it) and its lease is released by the expiry sweep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform::db::PgPool;
use platform::plans::Plan;
use platform::ApiError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lease::{self, Ask, Book, Ledger, Sizing};
use super::{insufficient_quota, lock_ledger, period, wanted_tokens, Reservation};

#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// How long a lease row outlives its last sync before the sweep may release it.
    pub hold: Duration,
    pub flush: Duration,
    pub idle: Duration,
    pub sizing: Sizing,
    /// Reserve every call in the ledger instead (no leases): the baseline of the benchmarks.
    pub per_call: bool,
}

/// One organization's lease for one month, in this process.
#[derive(Debug)]
pub struct Lease {
    org_id: Uuid,
    period: String,
    state: Mutex<State>,
    /// Serializes this process's syncs of the lease, so only one waits on the ledger row.
    sync: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    /// The lease row; `None` while this process holds no lease.
    row: Option<Uuid>,
    /// The limit of the plan at the last sync.
    limit: i64,
    book: Book,
    /// Tokens used or held outside this lease at the last sync.
    others: i64,
    /// When the row may be released by the sweep, by this process's clock (a little early).
    expires: Instant,
    last_call: Instant,
    /// A give-back is in progress: calls wait for it and lease anew.
    closing: bool,
    topping_up: bool,
}

impl State {
    fn usable(&self, limit: i64, now: Instant) -> bool {
        self.row.is_some() && !self.closing && now < self.expires && limit >= self.limit
    }
}

pub struct Leases {
    pool: PgPool,
    config: LeaseConfig,
    leases: Mutex<HashMap<(Uuid, String), Arc<Lease>>>,
    /// Ledger transactions run so far (a figure for the benchmarks).
    transactions: AtomicU64,
}

impl Leases {
    pub fn new(pool: PgPool, config: LeaseConfig) -> Arc<Self> {
        Arc::new(Self {
            pool,
            config,
            leases: Mutex::new(HashMap::new()),
            transactions: AtomicU64::new(0),
        })
    }

    /// Ledger transactions run so far by this process, per-call reservations included.
    pub fn ledger_transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    fn lease(&self, org_id: Uuid, period: &str) -> Arc<Lease> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases
            .entry((org_id, period.to_string()))
            .or_insert_with(|| {
                Arc::new(Lease {
                    org_id,
                    period: period.to_string(),
                    state: Mutex::new(State {
                        row: None,
                        limit: 0,
                        book: Book::default(),
                        others: 0,
                        expires: Instant::now(),
                        last_call: Instant::now(),
                        closing: false,
                        topping_up: false,
                    }),
                    sync: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Reserves a call's tokens from this process's lease, growing it from the ledger when it
    /// cannot cover the call; 429 `insufficient_quota` only when the ledger has no room left.
    pub async fn reserve(
        self: &Arc<Self>,
        org_id: Uuid,
        plan: &Plan,
        prompt: i64,
        wanted: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Reservation, ApiError> {
        let period = period(now);
        let Some(limit) = plan.tokens_per_month.map(|t| t as i64) else {
            return Ok(super::unlimited(org_id, period, wanted));
        };
        if self.config.per_call {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            return super::reserve(
                &self.pool,
                org_id,
                plan,
                prompt,
                wanted,
                now,
                self.config.hold,
            )
            .await;
        }
        let (min, want) = wanted_tokens(prompt, wanted);
        let lease = self.lease(org_id, &period);
        if let Some(reservation) = self.take(&lease, limit, prompt, min, want, false) {
            return Ok(reservation);
        }
        let _syncing = lease.sync.lock().await;
        // Another call may have grown the lease meanwhile.
        if let Some(reservation) = self.take(&lease, limit, prompt, min, want, false) {
            return Ok(reservation);
        }
        loop {
            match self.sync(&lease, limit, Ask::Grow { min, want }).await? {
                Err(exhausted) => {
                    return Err(insufficient_quota(
                        plan,
                        limit,
                        exhausted.used,
                        exhausted.reserved,
                        now,
                    ))
                }
                Ok(()) => {
                    if let Some(reservation) = self.take(&lease, limit, prompt, min, want, true) {
                        return Ok(reservation);
                    }
                    // Calls of this process took the new tokens before this one could: grow again.
                }
            }
        }
    }

    /// Takes a reservation from the lease if it is usable and covers the call. No I/O.
    fn take(
        self: &Arc<Self>,
        lease: &Arc<Lease>,
        limit: i64,
        prompt: i64,
        min: i64,
        want: i64,
        partial: bool,
    ) -> Option<Reservation> {
        let now = Instant::now();
        let mut state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.usable(limit, now) {
            return None;
        }
        let tokens = state.book.take(min, want, partial)?;
        state.last_call = now;
        let remaining = lease::remaining(limit, state.others, &state.book);
        // A big lease running low is topped up in the background, so calls rarely wait on the
        // ledger; near exhaustion leases are about one call and are not topped up ahead.
        if state.book.available() < state.book.held / 4
            && state.book.held >= 4 * want
            && !state.topping_up
        {
            state.topping_up = true;
            let (leases, lease) = (self.clone(), lease.clone());
            tokio::spawn(async move {
                let _syncing = lease.sync.lock().await;
                let grow = Ask::Grow { min: want, want };
                if let Err(e) = leases.sync(&lease, limit, grow).await {
                    tracing::warn!(error = %e, "topping up a quota lease failed");
                }
                lease
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .topping_up = false;
            });
        }
        Some(Reservation {
            id: Uuid::now_v7(),
            org_id: lease.org_id,
            period: lease.period.clone(),
            tokens,
            completion_budget: tokens - prompt,
            remaining: Some(remaining),
            lease: Some(lease.clone()),
        })
    }

    /// Replaces a reservation by the tokens the call used: in memory for a lease's, in the
    /// ledger for a per-call one.
    pub async fn settle(&self, reservation: &Reservation, used: i64) -> Result<(), ApiError> {
        match &reservation.lease {
            Some(lease) => {
                let mut state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
                state.book.settle(reservation.tokens, used);
                state.last_call = Instant::now();
                Ok(())
            }
            None if reservation.remaining.is_none() => Ok(()),
            None => {
                self.transactions.fetch_add(1, Ordering::Relaxed);
                super::settle(&self.pool, reservation, used).await
            }
        }
    }

    /// One ledger transaction for a lease: writes its settled usage, then resizes it as `ask`
    /// says and renews its expiry. The caller holds `lease.sync`. The outer error is the
    /// database's; the inner one says the allowance cannot cover a growth.
    async fn sync(
        &self,
        lease: &Lease,
        limit: i64,
        ask: Ask,
    ) -> Result<Result<(), lease::Exhausted>, ApiError> {
        let started = Instant::now();
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (used, reserved) = lock_ledger(&tx, lease.org_id, &lease.period).await?;
        let row = lease.state.lock().unwrap_or_else(|p| p.into_inner()).row;
        let held_in_ledger = match row {
            Some(id) => tx
                .query_opt(
                    "SELECT tokens FROM quota_reservations WHERE id = $1",
                    &[&id],
                )
                .await?
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0),
            None => 0,
        };
        // The book is read after the ledger row is locked; calls that change it meanwhile only
        // move tokens inside what the lease holds, which the sync keeps covered.
        let book = lease.state.lock().unwrap_or_else(|p| p.into_inner()).book;
        let synced = match lease::sync(
            limit,
            Ledger { used, reserved },
            held_in_ledger,
            &book,
            ask,
            self.config.sizing,
        ) {
            Ok(synced) => synced,
            Err(exhausted) => return Ok(Err(exhausted)),
        };
        let id = row.unwrap_or_else(Uuid::now_v7);
        let hold = self.config.hold.as_secs_f64();
        tx.execute(
            "INSERT INTO quota_reservations (id, org_id, period, tokens, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
             ON CONFLICT (id) DO UPDATE SET tokens = EXCLUDED.tokens, expires_at = EXCLUDED.expires_at",
            &[&id, &lease.org_id, &lease.period, &synced.held, &hold],
        )
        .await?;
        tx.execute(
            "UPDATE quota_usage SET used = $3, reserved = $4 WHERE org_id = $1 AND period = $2",
            &[
                &lease.org_id,
                &lease.period,
                &synced.ledger.used,
                &synced.ledger.reserved,
            ],
        )
        .await?;
        tx.commit().await?;
        let mut state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
        state.row = Some(id);
        state.limit = limit;
        state.book.held = synced.held;
        state.book.settled -= synced.flushed;
        state.others = synced.others;
        state.expires = started + self.config.hold.saturating_sub(Duration::from_secs(1));
        Ok(Ok(()))
    }

    /// Gives a lease with no call in flight back to the ledger: its settled usage to `used`,
    /// its tokens out of `reserved`.
    async fn give_back(&self, lease: &Lease) -> Result<(), ApiError> {
        let _syncing = lease.sync.lock().await;
        let (row, book) = {
            let mut state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.book.in_flight > 0 || state.closing {
                return Ok(());
            }
            let Some(row) = state.row else { return Ok(()) };
            state.closing = true;
            (row, state.book)
        };
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            lock_ledger(&tx, lease.org_id, &lease.period).await?;
            let held = tx
                .query_opt(
                    "DELETE FROM quota_reservations WHERE id = $1 RETURNING tokens",
                    &[&row],
                )
                .await?
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            tx.execute(
                "UPDATE quota_usage SET used = used + $3, reserved = reserved - $4 WHERE org_id = $1 AND period = $2",
                &[&lease.org_id, &lease.period, &book.settled, &held],
            )
            .await?;
            tx.commit().await?;
            Ok::<(), ApiError>(())
        }
        .await;
        let mut state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
        state.closing = false;
        if result.is_ok() {
            state.row = None;
            state.book = Book::default();
        }
        result
    }

    /// One round of upkeep: flushes settled usage and renews leases in use, gives back idle
    /// ones (and those of a past month), and forgets leases nobody refers to.
    pub async fn upkeep(&self, all: bool) {
        let leases: Vec<Arc<Lease>> = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        // Leases of different organizations lock different ledger rows: sync a few at once.
        futures::stream::iter(leases)
            .for_each_concurrent(8, |lease| async move {
                let (give_back, flush, limit) = {
                    let state = lease.state.lock().unwrap_or_else(|p| p.into_inner());
                    if state.row.is_none() {
                        (false, false, state.limit)
                    } else {
                        let idle = state.book.in_flight == 0
                            && (all || now.duration_since(state.last_call) >= self.config.idle);
                        let renew =
                            state.expires.saturating_duration_since(now) < self.config.hold / 2;
                        (idle, state.book.settled > 0 || renew, state.limit)
                    }
                };
                let result = if give_back {
                    self.give_back(&lease).await
                } else if flush {
                    match lease.sync.try_lock() {
                        Ok(_syncing) => self.sync(&lease, limit, Ask::Flush).await.map(|_| ()),
                        Err(_) => Ok(()), // a growth is syncing it right now
                    }
                } else {
                    Ok(())
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, org = %lease.org_id, "quota lease upkeep failed; retrying next round");
                }
            })
            .await;
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, lease| {
            Arc::strong_count(lease) > 1
                || lease.state.lock().map(|s| s.row.is_some()).unwrap_or(true)
        });
    }

    /// Runs the upkeep every flush interval; on shutdown gives back every lease it can.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.flush) => {}
            }
            self.upkeep(false).await;
        }
        self.upkeep(true).await;
    }
}
