//! Loading a [`Config`]: defaults, then a TOML file, then `FAUST__<SECTION>__<KEY>` variables,
//! every problem collected with its key and origin.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use config::{Environment, File, FileFormat, Map, Source, Value, ValueKind};
use serde::de::DeserializeOwned;
use serde_aux::serde_introspection::serde_introspect;

use super::Config;

impl Config {
    /// Loads `path` with overrides from the process environment.
    ///
    /// # Errors
    /// Every problem found, at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Loads `path` with overrides from `env` (name, value) pairs; only `FAUST__*` are read.
    ///
    /// # Errors
    /// Every problem found, at once.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let (config, issues) = Self::load_partial(path, env)?;
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors {
                file: path.display().to_string(),
                issues,
            })
        }
    }

    /// Loads what can be loaded: the config (bad fields left at their defaults) and every
    /// problem found, so that callers can add checks of their own before reporting.
    ///
    /// # Errors
    /// Only when nothing can be loaded: the file is missing or is not valid TOML.
    pub fn load_partial(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<Issue>), ConfigErrors> {
        let file = path.display().to_string();
        if !path.is_file() {
            return Err(whole(&file, "config file not found (or not a file)".into()));
        }
        Self::build(File::new(&file, FileFormat::Toml), file.clone(), env)
    }

    /// A config from TOML text, defaults for what it leaves out, no environment overrides
    /// (the test driver's: `faust::testing::TestDriver::from_toml`).
    ///
    /// # Errors
    /// Every problem found, at once.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        let origin = "the TOML text".to_owned();
        let source = File::from_str(text, FileFormat::Toml);
        let (config, issues) = Self::build(source, origin.clone(), std::iter::empty())?;
        match issues.is_empty() {
            true => Ok(config),
            false => Err(ConfigErrors {
                file: origin,
                issues,
            }),
        }
    }

    fn build<S: Source + Send + Sync + 'static>(
        source: S,
        file: String,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<Issue>), ConfigErrors> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("FAUST__"))
            .collect();
        let overridden: Vec<String> = env.keys().cloned().collect();
        let root = config::Config::builder()
            .add_source(source)
            .add_source(
                Environment::with_prefix("FAUST")
                    .prefix_separator("__")
                    .separator("__")
                    // Values stay text: each becomes what the key it sets expects (so
                    // `FAUST__APP__ID=007` is the id "007", `FAUST__PROCESSING__MAX_BATCH=64`
                    // the number 64).
                    .try_parsing(false)
                    .source(Some(env.into_iter().collect())),
            )
            .build()
            .and_then(|c| c.collect())
            .map_err(|e| whole(&file, e.to_string()))?;
        let mut loader = Loader {
            issues: Vec::new(),
            file: file.clone(),
        };
        let config = loader.config(root);
        for mut issue in config.check() {
            let var = format!("FAUST__{}", issue.key.replace('.', "__").to_uppercase());
            issue.origin = if overridden.contains(&var) {
                var
            } else {
                file.clone()
            };
            loader.issues.push(issue);
        }
        Ok((config, loader.issues))
    }
}

/// One problem with a whole config file.
fn whole(file: &str, message: String) -> ConfigErrors {
    ConfigErrors {
        file: file.to_owned(),
        issues: vec![Issue {
            key: String::new(),
            origin: file.to_owned(),
            message,
        }],
    }
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key, such as `web.bind` (empty for a whole-file problem).
    pub key: String,
    /// Where the value came from: the file, or `FAUST__WEB__BIND`.
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// The config file.
    pub file: String,
    /// The problems, in file order.
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{n} error{} in config {}:",
            if n == 1 { "" } else { "s" },
            self.file
        )?;
        for i in &self.issues {
            let origin = if i.origin.is_empty() || i.origin == self.file {
                String::new()
            } else {
                format!(" (from {})", i.origin)
            };
            match i.key.as_str() {
                "" => write!(f, "\n  - {}{origin}", i.message)?,
                key => write!(f, "\n  - {key}: {}{origin}", i.message)?,
            }
        }
        Ok(())
    }
}

struct Loader {
    issues: Vec<Issue>,
    file: String,
}

impl Loader {
    fn origin(&self, key: &str, value: &Value) -> String {
        match value.origin() {
            Some("the environment") | None => {
                format!("FAUST__{}", key.replace('.', "__").to_uppercase())
            }
            // The config crate names files relative to the working directory; say it as given.
            Some(_) => self.file.clone(),
        }
    }

    fn issue(&mut self, key: &str, value: &Value, message: String) {
        let origin = self.origin(key, value);
        self.issues.push(Issue {
            key: key.into(),
            origin,
            message,
        });
    }

    fn config(&mut self, mut root: Map<String, Value>) -> Config {
        let mut config = Config {
            app: self.section("app", root.remove("app")),
            broker: self.section("broker", root.remove("broker")),
            store: self.section("store", root.remove("store")),
            web: self.section("web", root.remove("web")),
            processing: self.section("processing", root.remove("processing")),
            generator: self.section("generator", root.remove("generator")),
            log: self.section("log", root.remove("log")),
            topics: BTreeMap::new(),
            agents: BTreeMap::new(),
            tables: BTreeMap::new(),
        };
        if let Some(topics) = root.remove("topics") {
            for (name, value) in self.table("topics", topics) {
                let key = format!("topics.{name}");
                config.topics.insert(name, self.section(&key, Some(value)));
            }
        }
        if let Some(tables) = root.remove("tables") {
            for (name, value) in self.table("tables", tables) {
                let key = format!("tables.{name}");
                config.tables.insert(name, self.section(&key, Some(value)));
            }
        }
        if let Some(agents) = root.remove("agents") {
            for (name, value) in self.table("agents", agents) {
                let key = format!("agents.{name}");
                config.agents.insert(name, self.section(&key, Some(value)));
            }
        }
        for (key, value) in root {
            let known = serde_introspect::<Config>().join(", ");
            self.issue(
                &key,
                &value,
                format!("unknown section (known sections: {known})"),
            );
        }
        config
    }

    fn table(&mut self, key: &str, value: Value) -> Map<String, Value> {
        match value.clone().into_table() {
            Ok(t) => t,
            Err(_) => {
                self.issue(key, &value, "must be a table of keys".into());
                Map::new()
            }
        }
    }

    /// Deserializes one section field by field, so that every bad field is reported.
    fn section<T: DeserializeOwned + Default>(&mut self, name: &str, value: Option<Value>) -> T {
        let Some(value) = value else {
            return T::default();
        };
        let known = serde_introspect::<T>();
        let mut good = Map::new();
        for (k, v) in self.table(name, value) {
            let key = format!("{name}.{k}");
            if !known.contains(&k.as_str()) {
                self.issue(
                    &key,
                    &v,
                    format!("unknown key (known keys: {})", known.join(", ")),
                );
                continue;
            }
            let single = Value::new(None, ValueKind::Table([(k.clone(), v.clone())].into()));
            match T::deserialize(single) {
                Ok(_) => {
                    good.insert(k, v);
                }
                Err(e) => {
                    let message = strip_key(&e.to_string());
                    self.issue(&key, &v, message);
                }
            }
        }
        T::deserialize(Value::new(Some(&self.file), ValueKind::Table(good))).unwrap_or_else(|e| {
            self.issues.push(Issue {
                key: name.into(),
                origin: self.file.clone(),
                message: e.to_string(),
            });
            T::default()
        })
    }
}

/// The config crate appends " for key `x`" and " in <origin>"; we say both ourselves.
fn strip_key(message: &str) -> String {
    let cut = message.find(" for key `").unwrap_or(message.len());
    let msg = &message[..cut];
    let cut = msg.find(" in the environment").unwrap_or(msg.len());
    msg[..cut].to_owned()
}
