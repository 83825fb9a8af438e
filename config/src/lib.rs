//! spindle's configuration: the TOML schema of SPEC §3, read in two stages.
//!
//! `raw` mirrors the file with serde (unknown keys rejected, spans kept);
//! `validate` turns it into the `model`, collecting every error with its
//! `file:line:col`; `profiles` and `carriers` hold the built-in tables;
//! `units` parses durations, sizes and converts energy units.
//!
//! [`load`] and [`parse`] give a [`model::Config`] or every error found.
//! [`parse_with`] / [`load_with`] also accept the `[device.sim]` tables that
//! only `spindle simulate` reads, and hand them back beside the model.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub mod carriers;
pub mod model;
mod near_miss;
mod nesting;
pub mod profiles;
mod raw;
pub mod units;
mod validate;

/// One mistake in a configuration file.
///
/// `line` and `column` are 1-based (column in characters). An error not tied
/// to a position (the file could not be read) has line 0 and displays
/// without a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in one reading of a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How a file is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept `[device.sim]` tables (for `spindle simulate`); otherwise they are errors.
    pub allow_sim: bool,
}

/// A validated configuration and what only the simulator reads.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: model::Config,
    /// Each device's `[device.sim]` table, unvalidated, by device name
    /// (empty unless [`ParseOptions::allow_sim`]).
    pub sim: BTreeMap<String, toml::Table>,
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<model::Config, ConfigErrors> {
    load_with(path, ParseOptions::default()).map(|parsed| parsed.config)
}

/// Read and validate the file at `path` with `options`.
pub fn load_with(path: &Path, options: ParseOptions) -> Result<Parsed, ConfigErrors> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {error}"),
        }])
    })?;
    let text = String::from_utf8(bytes).map_err(|error| {
        let valid = error.utf8_error().valid_up_to();
        let prefix =
            String::from_utf8_lossy(error.as_bytes().get(..valid).unwrap_or_default()).into_owned();
        let (line, column) = validate::position(&prefix, valid);
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        }])
    })?;
    parse_with(&file, &text, options)
}

/// Validate `text`, naming it `file_name` in messages and in `Config::source`.
pub fn parse(file_name: &str, text: &str) -> Result<model::Config, ConfigErrors> {
    parse_with(file_name, text, ParseOptions::default()).map(|parsed| parsed.config)
}

/// Validate `text` with `options`.
pub fn parse_with(
    file_name: &str,
    text: &str,
    options: ParseOptions,
) -> Result<Parsed, ConfigErrors> {
    let raw = raw::parse(text).map_err(|error| {
        let (line, column) = error
            .offset()
            .map_or((1, 1), |offset| validate::position(text, offset));
        ConfigErrors(vec![ConfigError {
            file: file_name.to_owned(),
            line,
            column,
            message: error.to_string(),
        }])
    })?;
    validate::validate(file_name, text, &raw, options).map_err(ConfigErrors)
}
