//! One Postgres `LISTEN` connection per process, kept open and reconnected, telling its owner
//! when it starts listening, when it lost the connection, and each notification in the order
//! Postgres delivered them (commit order, and issue order inside one transaction).

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// What the listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// `LISTEN` is in place on every channel: from now on no notification is missed.
    Listening,
    /// The connection is gone; notifications may be missed until the next `Listening`.
    Lost,
    Notification {
        channel: &'a str,
        payload: &'a str,
    },
}

/// Listens on `channels` until `shutdown`, reconnecting after failures.
pub async fn listen<F>(
    database: crate::db::Database,
    channels: Vec<&'static str>,
    mut on: F,
    shutdown: CancellationToken,
) where
    F: FnMut(Heard<'_>) + Send,
{
    while !shutdown.is_cancelled() {
        let result = listen_once(&database, &channels, &mut on, &shutdown).await;
        on(Heard::Lost);
        if let Err(e) = result {
            tracing::warn!(error = %e, ?channels, "notification listener lost its connection; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn listen_once<F>(
    database: &crate::db::Database,
    channels: &[&'static str],
    on: &mut F,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    F: FnMut(Heard<'_>) + Send,
{
    let (client, mut connection) = database.dedicated().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let heard = (n.channel().to_string(), n.payload().to_string());
                    if tx.send(heard).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        Ok(())
    });
    let statements: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
    client.batch_execute(&statements).await?;
    on(Heard::Listening);
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            heard = rx.recv() => match heard {
                Some((channel, payload)) => on(Heard::Notification { channel: &channel, payload: &payload }),
                None => break Err(anyhow::anyhow!("the listening connection closed")),
            },
        }
    };
    drop(client);
    driver.abort();
    outcome
}
