//! `aihub <command>`: see `aihub --help`.

use std::ffi::OsString;

use anyhow::Context;
use clap::{Parser, Subcommand};
use platform::Config;
use projectors::ProjectorConfig;

use crate::app::{self, Roles};

#[derive(Debug, Parser)]
#[command(
    name = "aihub",
    about = "AI Hub: an OpenAI-compatible enterprise AI API platform",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::enum_variant_names)] // the variants are the CLI's subcommand names
enum Command {
    /// Every role in one process on one port (the default way to run).
    Serve,
    /// The write API and the outbox relay only.
    CommandApi,
    /// The query API only.
    ReadApi,
    /// The projectors only.
    Projectors,
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Create the database, apply migrations and create the event topic.
    Bootstrap,
    /// Rebuild read models from the beginning of the event topic; or, with `--org`, write one
    /// organization's state at an instant into a schema of its own.
    Replay {
        /// The projection to rebuild (tenancy, audit, usage, catalog).
        #[arg(long, required_unless_present_any = ["all", "org"], conflicts_with_all = ["all", "org"])]
        projection: Option<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "org")]
        all: bool,
        /// Point-in-time replay for audits: the organization whose users, roles, teams, API keys
        /// and subscription are written as they were at `--as-of`.
        #[arg(long, requires_all = ["as_of", "schema"])]
        org: Option<uuid::Uuid>,
        /// The instant (RFC 3339): the organization's events that occurred at or before it are
        /// replayed.
        #[arg(long, requires = "org")]
        as_of: Option<String>,
        /// The schema to write the tenancy tables into (created, or replaced when it holds only
        /// a previous replay's tables).
        #[arg(long, requires = "org")]
        schema: Option<String>,
    },
    /// Write a consistent dump of the journal and the write-side tables into a new directory,
    /// with a manifest of its journal position and checksums.
    Backup {
        /// The directory to write (created; it must not hold a backup).
        #[arg(long, required_unless_present = "into", conflicts_with = "into")]
        to: Option<std::path::PathBuf>,
        /// Write `aihub-<UTC time>` under this directory instead, and keep only the newest
        /// `--keep` backups there (for a scheduled job).
        #[arg(long)]
        into: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 7, requires = "into")]
        keep: usize,
    },
    /// Restore into an empty database: from a backup (then the topic's events beyond it), or
    /// from the event topic alone. The read models are rebuilt by replay afterwards.
    Restore {
        /// The backup directory.
        #[arg(
            long,
            required_unless_present = "from_topic",
            conflicts_with = "from_topic"
        )]
        from: Option<std::path::PathBuf>,
        /// Rebuild the journal from the topic alone.
        #[arg(long)]
        from_topic: bool,
        /// Only the backup: do not append the topic's later events.
        #[arg(long, requires = "from")]
        dump_only: bool,
        /// Leave the read models empty (run `aihub replay --all` later).
        #[arg(long)]
        no_replay: bool,
    },
    /// Check a backup's manifest and files against their checksums, without restoring.
    VerifyBackup {
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Billing operations.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// The model catalog.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// The audit trail's tamper-evident chains.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (what `docs/openapi.json` holds).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every link and signed checkpoint of the audit chains on the topic, in the journal and
    /// in the audit read model; prints the report as JSON and exits 1 when any event was altered,
    /// inserted, removed or reordered, naming the first such event of each chain.
    Verify {
        /// One organization's chain (default: every chain, the platform's included).
        #[arg(long)]
        org: Option<uuid::Uuid>,
    },
    /// Sign the head of every chain that moved since its last checkpoint, now
    /// (needs AIHUB_AUDIT_SIGNING_KEY).
    Checkpoint,
}

#[derive(Debug, Subcommand)]
enum BillingCommand {
    /// Issue the invoices of a calendar month that has ended (idempotent: invoices already
    /// issued are left alone).
    ClosePeriod {
        /// The month, `YYYY-MM` (UTC).
        #[arg(long)]
        period: String,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Import OpenRouter's model list with prices (GET $OPENROUTER_BASE_URL/models); records a
    /// catalog.synced event when anything changed.
    Sync,
}

pub async fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    if let Command::Openapi = cli.command {
        print!("{}", crate::openapi::pretty());
        return Ok(());
    }
    let config = Config::from_env()?;
    platform::personal::install(config.personal_data_secret.clone());
    match cli.command {
        Command::Serve => serve(config, Roles::all()).await,
        Command::CommandApi => {
            serve(
                config,
                Roles {
                    command_api: true,
                    ..Roles::none()
                },
            )
            .await
        }
        Command::ReadApi => {
            serve(
                config,
                Roles {
                    read_api: true,
                    ..Roles::none()
                },
            )
            .await
        }
        Command::Projectors => {
            serve(
                config,
                Roles {
                    projectors: true,
                    ..Roles::none()
                },
            )
            .await
        }
        Command::Migrate => {
            config.database.create_database_if_missing().await?;
            let pool = config.database.pool(2)?;
            let applied = platform::db::migrate(&pool).await?;
            println!(
                "migrations applied: {}",
                if applied.is_empty() {
                    "none (up to date)".into()
                } else {
                    applied.join(", ")
                }
            );
            Ok(())
        }
        Command::Bootstrap => {
            config.database.create_database_if_missing().await?;
            let pool = config.database.pool(2)?;
            platform::db::migrate(&pool).await?;
            // A refused password or certificate says so, instead of a topic request timing out.
            app::check_broker(&config.kafka).await?;
            events::kafka::ensure_topic(
                &config.kafka,
                &config.topic,
                config.topic_partitions,
                config.topic_replication,
            )
            .await
            .map_err(anyhow::Error::msg)
            .context("creating the event topic")?;
            println!("database migrated; topic {} ready", config.topic);
            Ok(())
        }
        Command::Replay {
            org: Some(org),
            as_of,
            schema,
            ..
        } => {
            replay_org(
                config,
                org,
                as_of.as_deref().unwrap_or_default(),
                schema.as_deref().unwrap_or_default(),
            )
            .await
        }
        Command::Replay {
            projection, all, ..
        } => replay(config, projection, all).await,
        Command::Backup { to, into, keep } => {
            match (to, into) {
                (Some(dir), _) => {
                    crate::backup::backup(&config, &dir).await?;
                }
                (None, Some(root)) => {
                    crate::backup::backup(&config, &crate::backup::timestamped(&root)).await?;
                    for gone in crate::backup::prune(&root, keep).await? {
                        println!(
                            "backup: removed {} (keeping the newest {keep})",
                            gone.display()
                        );
                    }
                }
                (None, None) => anyhow::bail!("name a directory: --to DIR or --into ROOT"),
            }
            Ok(())
        }
        Command::Restore {
            from,
            from_topic,
            dump_only,
            no_replay,
        } => {
            let restored = match (from, from_topic) {
                (Some(dir), false) => crate::backup::restore(&config, &dir, dump_only).await?,
                _ => crate::backup::restore_from_topic(&config).await?,
            };
            println!(
                "restore: {} events from the backup, {} from the topic",
                restored.from_dump, restored.from_topic
            );
            if !no_replay {
                replay(config, None, true).await?;
            }
            Ok(())
        }
        Command::VerifyBackup { from } => {
            let manifest = crate::backup::verify(&from).await?;
            println!(
                "backup {}: intact; {} events up to journal position {}, made {}",
                from.display(),
                manifest.journal_events,
                manifest.journal_position,
                manifest.created_at
            );
            Ok(())
        }
        Command::Billing {
            command: BillingCommand::ClosePeriod { period },
        } => close_period(config, &period).await,
        Command::Models {
            command: ModelsCommand::Sync,
        } => crate::models::sync(config).await,
        Command::Audit {
            command: AuditCommand::Verify { org },
        } => audit_verify(config, org).await,
        Command::Audit {
            command: AuditCommand::Checkpoint,
        } => {
            let signer = config
                .audit_signing_key
                .clone()
                .context("AIHUB_AUDIT_SIGNING_KEY is unset: there is no key to sign with")?;
            let journal = command_api::Journal::new(config.database.pool(2)?);
            let signed = command_api::audit::checkpoint_chains(&journal, &signer).await?;
            println!("{signed} audit chains checkpointed");
            Ok(())
        }
        Command::Openapi => Ok(()),
    }
}

async fn audit_verify(config: Config, org: Option<uuid::Uuid>) -> anyhow::Result<()> {
    let pool = config.database.pool(2)?;
    let sources = projectors::audit::verify::Sources {
        pool: &pool,
        kafka: &config.kafka,
        topic: &config.topic,
        key: config.audit_signing_key.as_ref().map(|k| k.public()),
    };
    let report = projectors::audit::verify::verify(&sources, org).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    for chain in &report.chains {
        if let Some(broken) = &chain.broken {
            eprintln!(
                "chain {}: broken in the {} at event {} (seq {}): {}",
                chain.chain,
                broken.source,
                broken
                    .event_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "?".into()),
                broken
                    .seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into()),
                broken.reason
            );
        }
    }
    if report.ok {
        Ok(())
    } else {
        // Named above; a non-zero exit without another message.
        std::process::exit(1)
    }
}

async fn close_period(config: Config, raw: &str) -> anyhow::Result<()> {
    let period = platform::plans::Period::parse(raw)
        .with_context(|| format!("invalid period {raw:?}: expected a month as YYYY-MM"))?;
    let pool = config.database.pool(2)?;
    let journal = command_api::Journal::new(pool);
    println!("close-period {period}: issuing invoices");
    let report = command_api::billing::close::close_period(
        &journal,
        period,
        config.clock.now(),
        |done, of| println!("close-period {period}: {done}/{of} organizations"),
    )
    .await?;
    println!(
        "close-period {period}: {} organizations, {} invoices issued ({}.{:02} USD), {} already issued{}",
        report.organizations,
        report.issued,
        report.issued_cents / 100,
        report.issued_cents % 100,
        report.already_issued,
        if report.already_closed {
            "; the period was already closed"
        } else {
            ""
        }
    );
    Ok(())
}

async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    if config.personal_data_secret.is_none() {
        tracing::warn!(
            "AIHUB_PERSONAL_DATA_SECRET is not set: emails are indexed, and person keys wrapped, under the public development secret"
        );
    }
    for line in Config::describe(std::env::vars_os())? {
        tracing::info!(target: "aihub::config", "{line}");
    }
    let running = app::start(config, roles).await?;
    if let Some(addr) = running.addr {
        tracing::info!(%addr, "AI Hub is listening");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

/// `aihub replay --org --as-of --schema`: the organization's state at the instant, replayed from
/// the topic through the tenancy projection into `schema`, committed.
async fn replay_org(
    config: Config,
    org: uuid::Uuid,
    as_of: &str,
    schema: &str,
) -> anyhow::Result<()> {
    use projectors::audit::state;
    let at = chrono::DateTime::parse_from_rfc3339(as_of)
        .with_context(|| format!("--as-of {as_of:?} is not an RFC 3339 instant"))?
        .with_timezone(&chrono::Utc);
    anyhow::ensure!(
        at <= chrono::Utc::now() + chrono::Duration::seconds(5),
        "--as-of {as_of} is in the future"
    );
    anyhow::ensure!(
        state::valid_schema(schema),
        "--schema {schema:?}: use a lower-case identifier that is not public, read, information_schema or pg_*"
    );
    let pool = config.database.pool(2)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Replace only a schema that holds nothing but a previous replay's tables.
    let held: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ours = state::tables();
    let foreign: Vec<&String> = held
        .iter()
        .filter(|t| !ours.contains(&t.as_str()))
        .collect();
    anyhow::ensure!(
        foreign.is_empty(),
        "schema {schema} holds tables a replay did not write ({}); not replacing it",
        foreign
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0);
    if exists {
        println!("replay: replacing schema {schema}");
        tx.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
    }
    state::create_tables(&*tx, schema).await?;
    println!(
        "replay: organization {org} as of {} from topic {} into schema {schema}",
        at.to_rfc3339(),
        config.topic
    );
    let started = std::time::Instant::now();
    let replayed = state::replay_into(&*tx, &config.kafka, &config.topic, schema, org, at, |c| {
        println!(
            "replay: {} messages read, {} events of the organization applied",
            c.read, c.applied
        )
    })
    .await?;
    let mut written = Vec::new();
    for table in &ours {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[])
            .await?
            .get(0);
        written.push(format!("{table} {rows}"));
    }
    tx.commit().await?;
    println!(
        "replay: {} events applied ({} later ones left out) in {:.1}s; wrote {schema}: {}",
        replayed.applied,
        replayed.later,
        started.elapsed().as_secs_f64(),
        written.join(", ")
    );
    Ok(())
}

async fn replay(config: Config, projection: Option<String>, all: bool) -> anyhow::Result<()> {
    let selected = if all {
        projectors::all()
    } else {
        let name = projection.unwrap_or_default();
        let known: Vec<_> = projectors::all().iter().map(|p| p.name()).collect();
        vec![projectors::by_name(&name)
            .with_context(|| format!("unknown projection {name:?}; known: {}", known.join(", ")))?]
    };
    let pool = config.database.pool(4)?;
    let projector_config = ProjectorConfig {
        kafka: config.kafka.clone(),
        topic: config.topic.clone(),
        group_prefix: config.consumer_group_prefix.clone(),
        linger: std::time::Duration::ZERO,
    };
    let rebuilds = selected.into_iter().map(|projection| {
        let pool = pool.clone();
        let projector_config = projector_config.clone();
        async move {
            let name = projection.name();
            let started = std::time::Instant::now();
            println!(
                "replay {name}: rebuilding from the beginning of {}",
                projector_config.topic
            );
            let applied = projectors::replay::rebuild(projection, &pool, &projector_config).await?;
            println!(
                "replay {name}: {applied} events applied in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            anyhow::Ok(())
        }
    });
    for result in futures::future::join_all(rebuilds).await {
        result?;
    }
    Ok(())
}
