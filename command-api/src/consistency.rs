//! Read-your-writes: a command waits until the projection that serves its resource reports the
//! event applied. Projectors `NOTIFY aihub_projected` with `<projection>:<event id>,…` when they
//! commit; one LISTEN connection per process wakes the waiting commands (and evicts the
//! authentication cache, see `listen`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::auth::{AuthCache, AUTH_CHANNEL};
use platform::db::PgPool;
use platform::notify::Heard;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PROJECTED_CHANNEL: &str = "aihub_projected";

type Waiters = HashMap<(String, Uuid), Vec<oneshot::Sender<()>>>;

pub struct Consistency {
    pool: PgPool,
    waiters: Mutex<Waiters>,
}

/// A registered wait; register before appending so no notification can slip past.
pub struct Pending {
    receivers: Vec<(String, Uuid, oneshot::Receiver<()>)>,
}

impl Consistency {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            waiters: Mutex::new(HashMap::new()),
        })
    }

    pub fn register(&self, projection: &str, event_ids: &[Uuid]) -> Pending {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let receivers = event_ids
            .iter()
            .map(|id| {
                let (tx, rx) = oneshot::channel();
                waiters
                    .entry((projection.to_string(), *id))
                    .or_default()
                    .push(tx);
                (projection.to_string(), *id, rx)
            })
            .collect();
        Pending { receivers }
    }

    /// True when every registered event was applied within `timeout`. A missed notification
    /// (the listener reconnecting) is covered by one look at `projector_applied` at the end.
    pub async fn wait(&self, pending: Pending, timeout: Duration) -> bool {
        let mut keys = Vec::new();
        let all = futures::future::join_all(pending.receivers.into_iter().map(|(p, id, rx)| {
            keys.push((p, id));
            rx
        }));
        let notified = tokio::time::timeout(timeout, all).await.is_ok();
        if notified {
            return true;
        }
        let applied = self.applied_in_table(&keys).await;
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for key in &keys {
            if let Some(list) = waiters.get_mut(key) {
                list.retain(|tx| !tx.is_closed());
                if list.is_empty() {
                    waiters.remove(key);
                }
            }
        }
        applied
    }

    async fn applied_in_table(&self, keys: &[(String, Uuid)]) -> bool {
        let Ok(client) = self.pool.get().await else {
            return false;
        };
        for (projection, id) in keys {
            match client
                .query_opt(
                    "SELECT 1 FROM projector_applied WHERE projection = $1 AND event_id = $2",
                    &[projection, id],
                )
                .await
            {
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
        true
    }

    fn notify(&self, payload: &str) {
        let Some((projection, ids)) = payload.split_once(':') else {
            return;
        };
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if waiters.is_empty() {
            return;
        }
        for id in ids.split(',').filter_map(|id| id.parse::<Uuid>().ok()) {
            if let Some(senders) = waiters.remove(&(projection.to_string(), id)) {
                for tx in senders {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Keeps the process's LISTEN connection open until cancelled. With `auth`, the same
    /// connection carries `aihub_auth`: the tenancy projector issues it before its
    /// `aihub_projected` in one transaction, so the cache has dropped a changed key before the
    /// command that changed it answers.
    pub async fn listen(
        self: Arc<Self>,
        database: platform::db::Database,
        auth: Option<Arc<AuthCache>>,
        shutdown: CancellationToken,
    ) {
        let mut channels = vec![PROJECTED_CHANNEL];
        if auth.is_some() {
            channels.push(AUTH_CHANNEL);
        }
        let on = move |heard: Heard<'_>| {
            if let Some(cache) = &auth {
                cache.heard(heard);
            }
            if let Heard::Notification { channel, payload } = heard {
                if channel == PROJECTED_CHANNEL {
                    self.notify(payload);
                }
            }
        };
        platform::notify::listen(database, channels, on, shutdown).await;
    }
}
