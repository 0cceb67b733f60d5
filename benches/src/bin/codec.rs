//! What reading an event costs: `EventEnvelope::decode` of a chat call's envelope, the text the
//! journal stores and the topic carries, which every projection that handles chat calls (four)
//! and the relay do once per call. Beside it, serde's derived decoder of the same type (the
//! flattened payload read through serde's generic buffer), which `decode` was until issue 17.
//!
//! Run: `cargo run --release -p benches --bin codec -- [events]` (default 200,000). No Postgres
//! or broker needed.

use std::time::Instant;

use benches::{machine, percentiles};
use command_api::journal::Encoded;
use events::EventEnvelope;

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    println!("machine: {}", machine());
    let org = uuid::Uuid::now_v7();
    let texts: Vec<String> = (0..events)
        .map(|i| {
            Encoded::of(&benches::usage_event(org, i))
                .text()
                .to_string()
        })
        .collect();
    let bytes = texts.iter().map(String::len).sum::<usize>() / events.max(1);
    println!("{events} chat call envelopes, {bytes} bytes each on average");
    type Decoder = fn(&[u8]) -> bool;
    let decoders: [(&str, Decoder); 2] = [
        ("EventEnvelope::decode", |text| {
            EventEnvelope::decode(text).is_ok()
        }),
        ("serde's derived decoder", |text| {
            serde_json::from_slice::<EventEnvelope>(text).is_ok()
        }),
    ];
    // Twice each, alternating, so neither runs only on a cold cache.
    for round in 0..2 {
        for (name, decode) in decoders {
            let mut latencies = Vec::with_capacity(events);
            let started = Instant::now();
            for text in &texts {
                let t = Instant::now();
                if !decode(text.as_bytes()) {
                    eprintln!("{name} could not read an envelope the journal wrote");
                    std::process::exit(1);
                }
                latencies.push(t.elapsed());
            }
            let total = started.elapsed();
            let (p50, p99, _) = percentiles(&mut latencies);
            println!(
                "round {} {name:<24} p50 {:.2} µs  p99 {:.2} µs  mean {:.2} µs  ({:.0} events/s)",
                round + 1,
                p50 * 1000.0,
                p99 * 1000.0,
                total.as_secs_f64() * 1e6 / events as f64,
                events as f64 / total.as_secs_f64().max(f64::EPSILON)
            );
        }
    }
}
