//! Client settings that hold secrets: never printed, whether in a log line, an error or a
//! `Debug` dump of a config or of a struct holding client settings.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

/// Parts of librdkafka keys whose values are secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `sasl.jaas.config`, ...).
const SECRET: &[&str] = &["password", "secret", "jaas", "token", "key.pem", "private"];

/// `value`, or `******` when `key` holds a secret.
pub fn masked(key: &str, value: &str) -> String {
    if SECRET.iter().any(|s| key.contains(s)) {
        "******".into()
    } else {
        value.into()
    }
}

/// The settings with their secret values masked, for `Debug` and logs.
pub fn masked_settings<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), masked(k, v)))
        .collect()
}

/// A librdkafka client config's settings with their secret values masked.
pub fn masked_client(config: &ClientConfig) -> BTreeMap<String, String> {
    masked_settings(config.config_map())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_other_settings_shown() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
        ] {
            assert_eq!(masked(key, "hunter2"), "******", "{key}");
        }
        assert_eq!(masked("security.protocol", "SASL_SSL"), "SASL_SSL");
        let mut c = ClientConfig::new();
        c.set("sasl.password", "hunter2")
            .set("security.protocol", "SASL_SSL");
        let shown = format!("{:?}", masked_client(&c));
        assert!(
            !shown.contains("hunter2") && shown.contains("SASL_SSL"),
            "{shown}"
        );
    }
}
