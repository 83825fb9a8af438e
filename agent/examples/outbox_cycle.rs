//! CPU cost of the outbox's life cycle for one message, as the publisher runs
//! it: append a telemetry record (50 points, ~1.3 KB), flush (the group
//! commit, here one record per flush unless `BATCH` says otherwise), read it
//! back, and delete it (the PUBACK). Prints the process CPU time (all
//! threads, sled's included) per message and per flush.
//!
//! `cargo run --release -p spindle --example outbox_cycle [SECONDS] [BATCH]`

#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::message::{Message, Reading, Telemetry, Value};
use spindle::outbox::{Outbox, OutboxOptions};

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime 11, stime 12 (man 5 proc).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let batch: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let dir = tempfile::tempdir()?;
    let opts = OutboxOptions {
        max_size: 64 << 20,
        max_age: Duration::from_secs(7 * 86_400),
        max_record: 256 << 10,
        cache_capacity: 8 << 20,
    };
    let (mut outbox, _) = Outbox::open(&dir.path().join("outbox"), opts, 1)?;
    let message = Message::Telemetry(Telemetry {
        ts: 1_000,
        device: Arc::from("meter-1"),
        points: (0..50)
            .map(|i| {
                (
                    Arc::from(format!("p{i:02}").as_str()),
                    Reading::Value(Value::Number(f64::from(1000 + i * 7))),
                )
            })
            .collect(),
        snapshot: false,
    });
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut messages = 0u64;
    let mut flushes = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let first = outbox.next_seq();
        let mut seqs = Vec::new();
        for _ in 0..batch {
            seqs.push(outbox.append(&message, 1_000)?);
        }
        outbox.flush()?;
        flushes += 1;
        let read = outbox.read(first, seqs.len(), 1_000)?;
        anyhow::ensure!(
            read.len() == seqs.len(),
            "read back {} of {}",
            read.len(),
            seqs.len()
        );
        for seq in &seqs {
            outbox.ack(&[*seq])?;
        }
        messages += batch;
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{messages} messages in {flushes} flushes over {wall:.1} s: {:.0} messages/s, CPU {cpu:.2} s = {:.1} µs per message, {:.1} µs per flush",
        messages as f64 / wall,
        cpu / messages as f64 * 1e6,
        cpu / flushes as f64 * 1e6,
    );
    Ok(())
}
