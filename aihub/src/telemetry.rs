//! Logging: human-readable lines by default, JSON with `AIHUB_LOG_FORMAT=json`; the level from
//! `RUST_LOG` (default `info`). A malformed value of either stops the process, like any other
//! variable (`platform::config`).

use tracing_subscriber::EnvFilter;

pub fn init() -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={directives:?} is not valid: {e}"))?,
        _ => EnvFilter::new("info,rdkafka=warn"),
    };
    let json = match std::env::var("AIHUB_LOG_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("text") => false,
        Ok("json") => true,
        Ok(other) => {
            anyhow::bail!("AIHUB_LOG_FORMAT={other:?} is not valid: expected text or json")
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}
