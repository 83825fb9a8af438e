//! Measures the on-disk size of the sled outbox against `max_size` under
//! sustained overflow (what `docs/GUARANTEES.md` quotes).
//!
//! `cargo run --release -p spindle --example outbox_disk [MAX_SIZE_MIB] [RECORDS]`

#![allow(clippy::cast_precision_loss)]

use std::time::Duration;

use std::sync::Arc;

use spindle::message::{Message, Reading, Telemetry, Value};
use spindle::outbox::{Outbox, OutboxOptions};

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let max_mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let records: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("outbox");
    let opts = OutboxOptions {
        max_size: max_mib << 20,
        max_age: Duration::from_secs(7 * 86_400),
        max_record: 256 << 10,
        cache_capacity: 8 << 20,
    };
    let (mut outbox, _) = Outbox::open(&path, opts, 1)?;
    let pad: Arc<str> = Arc::from("x".repeat(250).as_str());
    let mut peak = 0u64;
    for i in 0..records {
        let message = Message::Telemetry(Telemetry {
            ts: 1_000 + i,
            device: Arc::from("meter-line1"),
            points: vec![(Arc::from("pad"), Reading::Value(Value::Text(pad.clone())))],
            snapshot: false,
        });
        outbox.append(&message, 1_000 + i)?;
        if i % 1000 == 999 {
            outbox.flush()?;
            peak = peak.max(dir_size(&path));
        }
    }
    outbox.flush()?;
    let end = dir_size(&path);
    let stats = outbox.stats();
    println!(
        "max_size {max_mib} MiB, {records} records of ~{} B appended: record bytes held {:.2} MiB, dropped {}, \
         directory peak {:.2} MiB ({:.2}× max_size), at end {:.2} MiB",
        stats.bytes / stats.depth.max(1),
        stats.bytes as f64 / 1_048_576.0,
        stats.dropped_outbox_full,
        peak as f64 / 1_048_576.0,
        peak as f64 / (max_mib << 20) as f64,
        end as f64 / 1_048_576.0
    );
    Ok(())
}
