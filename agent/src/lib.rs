//! The spindle agent: CLI commands, scheduler, KPI engine, outbox and publisher.

pub mod busload;
pub mod clock;
pub mod events;
pub mod outbox;
pub mod publish;
