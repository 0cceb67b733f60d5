//! Read-your-writes: a command waits until the projection that serves its resource reports the
//! event applied. Projectors `NOTIFY aihub_projected` with `<projection>:<event id>,…` when they
//! commit; one LISTEN connection per process wakes the waiting commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use platform::db::PgPool;
use tokio::sync::oneshot;
use tokio_postgres::AsyncMessage;
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

    /// Keeps a LISTEN connection open until cancelled, reconnecting after failures.
    pub async fn listen(self: Arc<Self>, database_url: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.listen_once(&database_url, &shutdown).await {
                tracing::warn!(error = %e, "projection listener lost its connection; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn listen_once(
        &self,
        database_url: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (client, mut connection) = platform::db::dedicated(database_url).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok(())
        });
        client
            .batch_execute(&format!("LISTEN {PROJECTED_CHANNEL}"))
            .await?;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                payload = rx.recv() => match payload {
                    Some(payload) => self.notify(&payload),
                    None => break,
                },
            }
        }
        drop(client);
        driver.abort();
        Ok(())
    }
}
