//! The spindle agent: CLI commands, scheduler, KPI engine, outbox and publisher.

pub mod busload;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod events;
pub mod health;
pub mod history;
pub mod http;
pub mod kpi;
pub mod kpi_task;
pub mod message;
pub mod notify;
pub mod outbox;
pub mod poll;
pub mod publish;
pub mod runtime;
pub mod telemetry;
pub mod wire;
