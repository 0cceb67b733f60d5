//! What durability costs a chat call: the time `Spool::write` takes, the one thing the hot path
//! does for it (one line appended to a local file before the answer completes), with and
//! without `AIHUB_SPOOL_FSYNC`, and the appender's acknowledgement that deletes spent files.
//! Then how fast the appender reads a backlog back (`Spool::read_backlog`: the lines of calls
//! whose queue was full, decoded, in batches of 2,000), the rate a journal that fell behind is
//! fed at.
//! Before it, the call encodes its event once (`Encoded::of`: the journal's text and content
//! hash, which the spool's line reuses); that is timed apart.
//!
//! Run: `cargo run --release -p benches --bin spool -- [events]` (default 100,000; the fsync
//! variant writes a tenth of them). No Postgres or broker needed.

use std::time::{Duration, Instant};

use benches::{machine, percentiles};
use command_api::journal::Encoded;
use gateway::spool::{Line, Spool};

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    println!("machine: {}", machine());
    let org = uuid::Uuid::now_v7();
    for (fsync, count) in [(false, events), (true, (events / 10).max(1))] {
        let dir = std::env::temp_dir().join(format!("aihub-spool-bench-{}", uuid::Uuid::now_v7()));
        let spool = match Spool::open(&dir, fsync) {
            Ok(spool) => spool,
            Err(e) => {
                eprintln!("cannot open a spool in {}: {e}", dir.display());
                std::process::exit(1);
            }
        };
        let batch: Vec<_> = (0..count).map(|i| benches::usage_event(org, i)).collect();
        let mut encodings = Vec::with_capacity(count);
        let encoded: Vec<Encoded> = batch
            .iter()
            .map(|event| {
                let t = Instant::now();
                let encoded = Encoded::of(event);
                encodings.push(t.elapsed());
                encoded
            })
            .collect();
        let (e50, e99, _) = percentiles(&mut encodings);
        let mut latencies = Vec::with_capacity(count);
        let mut tickets = Vec::with_capacity(count);
        let started = Instant::now();
        for event in &encoded {
            let t = Instant::now();
            match spool.write(event.text()) {
                Ok(ticket) => tickets.push(ticket),
                Err(e) => {
                    eprintln!("write failed: {e}");
                    std::process::exit(1);
                }
            }
            latencies.push(t.elapsed());
        }
        let total = started.elapsed();
        let acked = Instant::now();
        for chunk in tickets.chunks(500) {
            spool.appended(chunk);
        }
        let ack = acked.elapsed();
        let (p50, p99, max) = percentiles(&mut latencies);
        println!(
            "fsync={fsync:<5} events={count:>7}  encode p50 {:.1} µs  p99 {:.1} µs; write p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs  ({:.0} writes/s); acknowledging all: {:.1} ms",
            e50 * 1000.0,
            e99 * 1000.0,
            p50 * 1000.0,
            p99 * 1000.0,
            max * 1000.0,
            count as f64 / total.as_secs_f64().max(f64::EPSILON),
            ack.as_secs_f64() * 1000.0
        );
        drop(spool);
        let _ = std::fs::remove_dir_all(&dir);
        std::thread::sleep(Duration::from_millis(10));
    }
    backlog(org, events);
}

/// Every event written while the queue refuses (backlog mode), then read back.
fn backlog(org: uuid::Uuid, count: usize) {
    let dir = std::env::temp_dir().join(format!("aihub-spool-bench-{}", uuid::Uuid::now_v7()));
    let Ok(spool) = Spool::open(&dir, false) else {
        eprintln!("cannot open a spool in {}", dir.display());
        std::process::exit(1);
    };
    for i in 0..count {
        let encoded = Encoded::of(&benches::usage_event(org, i));
        if let Err(e) = spool.write_then(Line::of(encoded.text()), |_| false) {
            eprintln!("write failed: {e}");
            std::process::exit(1);
        }
    }
    let started = Instant::now();
    let mut read = 0;
    let mut tickets = Vec::with_capacity(count);
    loop {
        match spool.read_backlog(2_000) {
            Ok(Some((batch, _))) => {
                read += batch.len();
                tickets.extend(batch.into_iter().map(|(_, _, ticket)| ticket));
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("read failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let took = started.elapsed();
    spool.appended(&tickets);
    println!(
        "backlog events={read:>7}  read back and decoded in {:.0} ms ({:.0} events/s, {:.1} µs each)",
        took.as_secs_f64() * 1000.0,
        read as f64 / took.as_secs_f64().max(f64::EPSILON),
        took.as_secs_f64() * 1e6 / read.max(1) as f64
    );
    if read != count {
        eprintln!("read {read} of {count} events back");
        std::process::exit(1);
    }
    drop(spool);
    let _ = std::fs::remove_dir_all(&dir);
}
