//! Rebuilding a projection: empty its tables, forget its offsets and applied events, and consume
//! the topic from the beginning up to where it ends now. Running projectors notice their offsets
//! are gone and start over too, so a rebuild is safe while the platform serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use events::kafka::KafkaConnection;
use platform::db::PgPool;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::runner::{consume, ProjectorConfig};
use crate::Projection;

/// Rebuilds one projection and returns how many events it applied.
pub async fn rebuild(
    projection: Arc<dyn Projection>,
    pool: &PgPool,
    config: &ProjectorConfig,
) -> anyhow::Result<u64> {
    let name = projection.name();
    let ends = end_offsets(&config.kafka, &config.topic).await?;
    {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        for table in projection.tables() {
            tx.batch_execute(&format!("TRUNCATE {table}")).await?;
        }
        tx.execute(
            "DELETE FROM projector_offsets WHERE projection = $1",
            &[&name],
        )
        .await?;
        tx.execute(
            "DELETE FROM projector_applied WHERE projection = $1",
            &[&name],
        )
        .await?;
        tx.commit().await?;
    }
    let group = format!(
        "{}.{}.replay-{}",
        config.group_prefix,
        name,
        uuid::Uuid::now_v7()
    );
    let applied = consume(
        projection.as_ref(),
        pool,
        config,
        &group,
        &CancellationToken::new(),
        Some(&ends),
    )
    .await?;
    if name == "metrics" {
        // Meters count what came before their definition by a back-fill; the rebuild is whole
        // only once those ran again.
        crate::backfill::run_pending(pool, config, &CancellationToken::new()).await?;
    }
    Ok(applied)
}

/// The high watermark of every partition of the topic: where a rebuild may stop.
pub async fn end_offsets(
    kafka: &KafkaConnection,
    topic: &str,
) -> anyhow::Result<HashMap<i32, i64>> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka.client_config().create()?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&topic), timeout)
            .context("reading topic metadata")?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !partitions.is_empty(),
            "topic {topic} has no partitions (does it exist?)"
        );
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, timeout)
                    .context("reading watermarks")?;
                Ok((p, high))
            })
            .collect()
    })
    .await?
}
