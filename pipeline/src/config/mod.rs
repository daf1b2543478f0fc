//! Settings, loaded in layers and validated into typed structs.
//!
//! The layers, later ones winning: the embedded defaults (byte-for-byte
//! `config/local.toml`), an optional TOML file given with `--config`, then
//! environment variables named `FAVERECS__SECTION__KEY`. Command-line flags are the
//! last layer and are applied by the binary on the validated [`Settings`].
//!
//! Loading happens in two steps, as ripgrep parses its flags: first into `Raw*`
//! structs that mirror the file (unknown keys are refused), then into [`Settings`],
//! whose values have been checked. Every error names the key, the value and what
//! was expected.

mod error;
mod raw;
mod settings;

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Toml};

pub use error::ConfigError;
use raw::RawSettings;
pub use settings::*;

/// The built-in defaults: exactly the text of `config/local.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../../config/local.toml");

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "FAVERECS__";

impl Settings {
    /// Loads the embedded defaults, then `file` if given, then the process
    /// environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] but with an explicit environment, so tests need not
    /// touch the process environment.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        // Collect the overrides ourselves: figment's Env reads the process
        // environment, and tests must be able to pass their own.
        let mut overrides = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            overrides.push((name, key, value));
        }
        let mut env_names = std::collections::HashMap::new();
        for (name, key, value) in overrides {
            if !key.contains('.') {
                return Err(ConfigError::Parse(format!(
                    "environment variable {name} does not name a key (expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}STORAGE__URL)"
                )));
            }
            // figment parses "2" as an integer and "true" as a bool, as TOML would.
            let Ok(parsed) = value.parse::<figment::value::Value>();
            figment = figment.merge(figment::providers::Serialized::default(&key, parsed));
            env_names.insert(key, name);
        }
        let raw: RawSettings = figment.extract().map_err(|e| {
            let mut parts = Vec::new();
            for err in e {
                let mut key = err.path.join(".");
                let problem = match &err.kind {
                    figment::error::Kind::UnknownField(field, expected) => {
                        if err.path.last() != Some(field) {
                            key = if key.is_empty() {
                                field.clone()
                            } else {
                                format!("{key}.{field}")
                            };
                        }
                        format!("unknown key (expected one of: {})", expected.join(", "))
                    }
                    other => other.to_string(),
                };
                let source = match env_names.get(&key) {
                    Some(name) => format!("from environment variable {name}"),
                    None if file.is_some() => format!(
                        "from {} or the defaults",
                        file.map(|f| f.display().to_string()).unwrap_or_default()
                    ),
                    None => "from the defaults".to_string(),
                };
                let key = if key.is_empty() {
                    "(top level)".into()
                } else {
                    key
                };
                parts.push(format!("config key {key}: {problem} ({source})"));
            }
            ConfigError::Parse(parts.join("; "))
        })?;
        raw.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_equal_local_toml_and_store_under_data() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults load");
        assert_eq!(
            s.storage.url,
            StorageUrl::Local {
                path: PathBuf::from("./data")
            }
        );
        assert_eq!(s.score.photo_recs_per_user, 100);
        assert_eq!(s.score.photographer_recs_per_user, 50);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/local.toml");
        let from_file = Settings::load_with_env(Some(&file), env(&[])).expect("file loads");
        assert_eq!(s, from_file);
    }

    #[test]
    fn environment_overrides_a_key() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("FAVERECS__STORAGE__URL", "s3://bucket/some/prefix/"),
                ("FAVERECS__SCORE__THREADS", "2"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            s.storage.url,
            StorageUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(s.score.threads, 2);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = Settings::load_with_env(None, env(&[("FAVERECS__STORAGE__URLX", "x")]))
            .expect_err("unknown key must fail");
        let msg = err.to_string();
        assert!(msg.contains("storage.urlx"), "{msg}");
        assert!(msg.contains("url"), "{msg}");
    }

    #[test]
    fn bad_storage_url_names_key_value_and_expectation() {
        let err = Settings::load_with_env(None, env(&[("FAVERECS__STORAGE__URL", "s3:/x")]))
            .expect_err("bad url must fail");
        assert_eq!(
            err.to_string(),
            "config key storage.url: \"s3:/x\" is not a supported URL (expected a plain path, file:///… or s3://bucket/prefix)"
        );
    }

    #[test]
    fn wrong_type_and_out_of_range_values_are_refused() {
        let err = Settings::load_with_env(
            None,
            env(&[("FAVERECS__SCORE__PHOTO_RECS_PER_USER", "many")]),
        )
        .expect_err("string for int");
        assert!(
            err.to_string().contains("score.photo_recs_per_user"),
            "{err}"
        );
        let err =
            Settings::load_with_env(None, env(&[("FAVERECS__SCORE__PHOTO_RECS_PER_USER", "0")]))
                .expect_err("zero");
        assert!(err.to_string().contains("from 1 to"), "{err}");
        // 0 tag photos means no tag lists; below 0 is refused, naming the key.
        let none = env(&[("FAVERECS__SCORE__TAG_PHOTOS_PER_TAG", "0")]);
        assert_eq!(
            Settings::load_with_env(None, none)
                .expect("0 is allowed")
                .score
                .tag_photos_per_tag,
            0
        );
        let err =
            Settings::load_with_env(None, env(&[("FAVERECS__SCORE__TAG_PHOTOS_PER_TAG", "-1")]))
                .expect_err("negative");
        assert!(
            err.to_string().contains("score.tag_photos_per_tag")
                && err.to_string().contains("from 0 to 10000"),
            "{err}"
        );
        // A choice is one of its names, and a wrong one lists them.
        let by = |v: &str| {
            Settings::load_with_env(None, env(&[("FAVERECS__SCORE__SHARD_TARGETS_BY", v)]))
                .map(|s| s.score.shard_targets_by)
        };
        assert_eq!(
            by("neighbourhood").expect("a choice"),
            ShardTargetsBy::Neighbourhood
        );
        assert_eq!(
            Settings::load_with_env(None, env(&[]))
                .expect("defaults")
                .score
                .shard_targets_by,
            ShardTargetsBy::Nsid
        );
        let err = by("users").expect_err("not a choice").to_string();
        assert!(
            err.contains("score.shard_targets_by")
                && err.contains("expected neighbourhood or nsid"),
            "{err}"
        );
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/faverecs.toml")), env(&[]))
            .expect_err("missing file");
        assert!(
            err.to_string().contains("/nonexistent/faverecs.toml"),
            "{err}"
        );
    }

    #[test]
    fn storage_url_forms() {
        assert_eq!(
            StorageUrl::parse("file:///tmp/x"),
            Ok(StorageUrl::Local {
                path: "/tmp/x".into()
            })
        );
        assert!(StorageUrl::parse("file://relative").is_err());
        assert!(StorageUrl::parse("gs://bucket").is_err());
        assert!(StorageUrl::parse("s3://").is_err());
        assert!(StorageUrl::parse("").is_err());
        assert_eq!(
            StorageUrl::parse("s3://b").map(|u| u.to_string()),
            Ok("s3://b".to_string())
        );
    }
}
