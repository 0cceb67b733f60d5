//! `aihub models sync`: imports OpenRouter's model list with prices into the catalog, prints
//! what changed, and records it as one `catalog.synced` event (none when nothing changed). The
//! relay of a running command API publishes it; gateways pick it up on their next refresh.

use events::{Actor, ActorType};
use gateway::import::{self as sync, Report};
use platform::Config;

pub async fn sync(config: Config) -> anyhow::Result<()> {
    let pool = config.database.pool(2)?;
    let journal = command_api::Journal::new(pool);
    // The gateway's own client: the same TLS roots, `AIHUB_UPSTREAM_CA_FILE` included.
    let http = gateway::upstream::http_client(config.gateway.upstream_ca_file.as_deref())?;
    let actor = Actor {
        kind: ActorType::System,
        id: "aihub models sync".into(),
        ip: None,
    };
    let correlation_id = format!("models-sync-{}", uuid::Uuid::now_v7());
    let report = sync::run(
        &journal,
        &http,
        &config.gateway.providers,
        config.gateway.upstream_timeout,
        actor,
        &correlation_id,
    )
    .await?;
    print(&report);
    Ok(())
}

fn print(report: &Report) {
    println!(
        "models sync: {} models imported from OpenRouter, {} skipped",
        report.imported,
        report.skipped.len()
    );
    for skipped in &report.skipped {
        println!("  skipped {}: {}", skipped.id, skipped.reason);
    }
    let (Some(event), Some(synced)) = (&report.recorded, report.synced()) else {
        println!(
            "models sync: no change; nothing recorded (catalog:openrouter stays at version {})",
            report.version
        );
        return;
    };
    for change in &synced.changed {
        let (before, after) = (&change.before, &change.after);
        println!(
            "  changed {}: input {} → {}, output {} → {} USD per million tokens, context {} → {}, tier {} → {}",
            after.name,
            dollars(before.input_micros_per_mtok),
            dollars(after.input_micros_per_mtok),
            dollars(before.output_micros_per_mtok),
            dollars(after.output_micros_per_mtok),
            before.context_length,
            after.context_length,
            before.tier,
            after.tier,
        );
    }
    println!(
        "models sync: added {}, changed {}, removed {}, skipped {}; recorded {} {} at {} version {}",
        synced.added.len(),
        synced.changed.len(),
        synced.removed.len(),
        report.skipped.len(),
        event.event_type(),
        event.event_id,
        event.stream_id,
        event.stream_version
    );
}

/// Millionths of a dollar as an exact decimal: 2_500_000 → `2.5`.
fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{}", micros / 1_000_000)
    } else {
        format!("{sign}{}.{fraction}", micros / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollars_are_exact() {
        assert_eq!(super::dollars(2_500_000), "2.5");
        assert_eq!(super::dollars(10_000_000), "10");
        assert_eq!(super::dollars(18_750), "0.01875");
        assert_eq!(super::dollars(0), "0");
        assert_eq!(super::dollars(1), "0.000001");
    }
}
