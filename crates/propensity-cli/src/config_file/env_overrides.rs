//! Environment overrides: `PROPENSITY__SECTION__KEY=value` variables
//! parsed into table paths and values ([`env_overrides`]) and set into the
//! configuration table ([`apply_env_overrides`]). Under `kafka.client`,
//! `_` stands for `.` (shells cannot export dotted names) and values stay
//! strings, as librdkafka takes them.

use anyhow::{bail, Context, Result};

/// The prefix of the variables that override configuration keys.
const ENV_PREFIX: &str = "PROPENSITY__";

/// One `PROPENSITY__…` environment override.
#[derive(Debug, Clone)]
pub(super) struct EnvOverride {
    /// The variable's name, for errors.
    pub(super) name: String,
    /// Table path and key, lowercased (`["kafka", "client", "sasl.password"]`).
    path: Vec<String>,
    /// The value to set.
    value: toml::Value,
}

impl EnvOverride {
    /// The key path as config errors write it (`kafka.client."sasl.password"`).
    pub(super) fn key_path(&self) -> String {
        self.path
            .iter()
            .map(|p| {
                if p.contains('.') {
                    format!("\"{p}\"")
                } else {
                    p.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The `PROPENSITY__SECTION__KEY=value` variables of `env`, sorted by name.
/// A value is read as TOML when it parses as one (numbers, booleans,
/// arrays, quoted strings) and as a plain string otherwise.
///
/// `PROPENSITY__KAFKA__CLIENT__<NAME>` sets the librdkafka property
/// `<name>` with `_` read as `.` (`SASL_PASSWORD` → `sasl.password`),
/// because shells cannot export names with dots and librdkafka property
/// names have no underscores; its value is always a string, as librdkafka
/// takes them (`…__LINGER_MS=5` is `"5"`, not the integer 5).
pub(super) fn env_overrides(
    env: impl Iterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>> {
    let mut vars: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    vars.into_iter()
        .map(|(name, raw)| {
            let mut path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            if path.iter().any(String::is_empty) || path.len() < 2 {
                bail!("environment variable {name}: expected PROPENSITY__<SECTION>__<KEY>");
            }
            let client_property = path.len() > 2 && path[0] == "kafka" && path[1] == "client";
            let value = if client_property {
                let property = path[2..].join(".").replace('_', ".");
                path.truncate(2);
                path.push(property);
                toml::Value::String(raw)
            } else {
                toml::from_str::<toml::Table>(&format!("v = {raw}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or(toml::Value::String(raw))
            };
            Ok(EnvOverride { name, path, value })
        })
        .collect()
}

/// Sets each override's key, creating missing tables; a path through a
/// value that is not a table is the variable's error.
pub(super) fn apply_env_overrides(root: &mut toml::Table, overrides: &[EnvOverride]) -> Result<()> {
    for o in overrides {
        let (key, sections) = o.path.split_last().context("an override has a key")?;
        let mut table = &mut *root;
        for part in sections {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().with_context(|| {
                format!("environment variable {}: `{part}` is not a section", o.name)
            })?;
        }
        table.insert(key.clone(), o.value.clone());
    }
    Ok(())
}
