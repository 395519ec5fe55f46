//! The configuration of portcullis: one typed struct ([`Config`]) holding every key of
//! DESIGN.md, read from TOML once and validated with errors that name the file and
//! the key. Absent keys take the defaults printed by `portcullis config default`
//! ([`DEFAULT_TOML`]), which is itself tested to parse back to [`Config::default`].

mod error;
mod types;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use types::*;

/// The commented default configuration printed by `portcullis config default`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// No file: the built-in defaults.
    Defaults,
}

impl Config {
    /// Loads `path`; when `path` is None, `./portcullis.toml` if it exists, else the
    /// built-in defaults. An explicitly named file must exist.
    pub fn load(path: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("portcullis.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Config::parse(&text, &path)?, Source::File(path))),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Config::default(), Source::Defaults))
            }
            Err(e) => Err(ConfigError::Unreadable {
                file: path,
                reason: e.to_string(),
            }),
        }
    }

    /// Parses and validates TOML text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        config
            .validate()
            .map_err(|(key, reason)| ConfigError::Invalid {
                file: file.to_path_buf(),
                key,
                reason,
            })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn default_text_is_the_default_config() {
        assert_eq!(parse(DEFAULT_TOML).unwrap(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[network]\ndynamic_pools = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(
            e.starts_with("test.toml line 2: network.dynamic_pools:"),
            "{e}"
        );
        assert!(e.contains("prefix length must be at most 32"), "{e}");
        let e = parse("[submission]\nmax_message_size = \"big\"\n").unwrap_err();
        assert!(
            e.starts_with("test.toml line 2: submission.max_message_size:"),
            "{e}"
        );
        let e = parse("[store]\nurll = \"x\"\n").unwrap_err();
        assert!(e.contains("unknown field `urll`"), "{e}");
        let e = parse("[delivery]\nmax_queue_time = \"5 days\"\n").unwrap_err();
        assert!(e.contains("delivery.max_queue_time"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn validation_names_the_key() {
        let e = parse(
            "[network]\ndynamic_pools = [\"10.0.0.0/8\"]\nstatic_pools = [\"10.1.0.0/16\"]\n",
        )
        .unwrap_err();
        assert_eq!(e, "test.toml: network.static_pools: dynamic pool 10.0.0.0/8 overlaps static pool 10.1.0.0/16");
        let e = parse("[auth]\nbackend = \"radius\"\n").unwrap_err();
        assert!(e.starts_with("test.toml: auth.radius_servers:"), "{e}");
        let e = parse("[enforce]\ntable = \"bad name;\"\n").unwrap_err();
        assert!(e.starts_with("test.toml: enforce.table:"), "{e}");
        let e = parse("[delivery]\nretry_schedule = []\n").unwrap_err();
        assert!(e.starts_with("test.toml: delivery.retry_schedule:"), "{e}");
        let e =
            parse("[delivery]\nsmart_host = \"relay:25\"\nsmart_host_user = \"u\"\n").unwrap_err();
        assert!(e.starts_with("test.toml: delivery.smart_host_user:"), "{e}");
        assert!(e.contains("go together"), "{e}");
        let e = parse("[delivery]\nsmart_host_user = \"u\"\nsmart_host_password_file = \"p\"\n")
            .unwrap_err();
        assert!(e.contains("need delivery.smart_host"), "{e}");
        let c = parse("[delivery]\nsmart_host = \"relay:587\"\nsmart_host_user = \"u\"\nsmart_host_password_file = \"/p\"\n")
            .unwrap();
        assert_eq!(c.delivery.smart_host_user.as_deref(), Some("u"));
        let e = parse("[delivery]\nconnections_per_destination = 0\n").unwrap_err();
        assert!(
            e.starts_with("test.toml: delivery.connections_per_destination:"),
            "{e}"
        );
        let e = parse("[delivery]\ndomain_rates = [{ domain = \"a.example\", per_minute = 0 }]\n")
            .unwrap_err();
        assert!(e.starts_with("test.toml: delivery.domain_rates[0]:"), "{e}");
        let e = parse("[delivery]\ndomain_rates = [{ domain = \"*\", per_minute = 60 }, { domain = \"*\", per_minute = 6 }]\n")
            .unwrap_err();
        assert!(e.contains("two rates"), "{e}");
    }

    #[test]
    fn domain_rates_fall_back_to_the_star_line() {
        let c = parse("[delivery]\ndomain_rates = [{ domain = \"*\", per_minute = 600 }, { domain = \"Mail.Example\", per_minute = 90, burst = 5 }]\n")
            .unwrap();
        let own = c.delivery.rate_for("mail.example").unwrap();
        assert_eq!((own.per_minute, own.burst()), (90, 5));
        let star = c.delivery.rate_for("other.example").unwrap();
        assert_eq!((star.per_minute, star.burst()), (600, 10));
        assert!(parse("").unwrap().delivery.rate_for("x.example").is_none());
    }

    #[test]
    fn parses_a_full_deployment() {
        let c = parse(
            r#"
[store]
url = "postgres://postgres@127.0.0.1/test"
[network]
dynamic_pools = ["100.64.0.0/10", "2001:db8:8000::/33"]
static_pools = ["198.51.100.0/24"]
[submission]
listen_starttls = ["[::]:587", "0.0.0.0:587"]
sender_policy = "any"
[auth]
backend = "radius"
radius_servers = ["127.0.0.1:1812"]
radius_secret = "s"
lockout = "15m"
[radius]
clients = [{ address = "10.0.0.0/8", secret = "nas-secret" }]
[delivery]
dkim = [{ domain = "isp.example", selector = "s1", key_file = "dkim.pem" }]
[abuse.thresholds]
complaints = 3
"#,
        )
        .unwrap();
        assert_eq!(c.network.dynamic_pools.len(), 2);
        assert_eq!(c.submission.listen_starttls.len(), 2);
        assert_eq!(c.submission.sender_policy, SenderPolicy::Any);
        assert_eq!(c.auth.lockout.as_secs(), 900);
        assert_eq!(c.radius.clients[0].secret, "nas-secret");
        assert_eq!(c.abuse.thresholds.complaints, 3);
        assert_eq!(
            c.abuse.thresholds.listings, 1,
            "unset keys keep their defaults"
        );
    }

    #[test]
    fn load_missing_default_file_gives_defaults_but_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.toml") && e.contains("cannot read"), "{e}");
    }
}
