//! Configuration errors.

use std::path::PathBuf;

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist or cannot be read.
    #[error("config file {path}: {reason} (pass an existing TOML file to --config)")]
    File {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// A key is unknown, has the wrong type, or could not be parsed.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A key parsed but its value is not acceptable.
    #[error("config key {key}: {value:?} {problem}")]
    Invalid {
        /// Dotted key, e.g. `storage.url`.
        key: &'static str,
        /// The offending value, as text.
        value: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}
