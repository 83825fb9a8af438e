//! spindle's configuration: the TOML schema of SPEC §3, read in two stages.
//!
//! `raw` mirrors the file with serde (unknown keys rejected, spans kept);
//! `validate` turns it into the `model`, collecting every error with its
//! `file:line:col`; `profiles` and `carriers` hold the built-in tables.

pub mod model;
