//! The spindle agent: CLI commands, scheduler, KPI engine, outbox and publisher.
pub mod outbox;
