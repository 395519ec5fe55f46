//! The configuration sections, their defaults, and validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use policy::{IpNet, Pools};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as "90s", "10m", "7d".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }
    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
    pub fn get(&self) -> std::time::Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        policy::parse_duration(&s)
            .map(Duration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format!("{}s", self.0.as_secs()))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    pub network: NetworkConfig,
    pub submission: SubmissionConfig,
    pub auth: AuthConfig,
    pub delivery: DeliveryConfig,
    pub radius: RadiusConfig,
    pub enforce: EnforceConfig,
    pub abuse: AbuseConfig,
    pub portal: PortalConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (default) or `postgres://...`.
    pub url: String,
    /// Spool, generated keys and certificates.
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://portcullis.db".into(),
            data_dir: "portcullis-data".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub dynamic_pools: Vec<IpNet>,
    pub static_pools: Vec<IpNet>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            dynamic_pools: vec![net("100.64.0.0/10")],
            static_pools: vec![net("198.51.100.0/24")],
        }
    }
}

impl NetworkConfig {
    /// The pools as the policy sees them (validated: never overlapping).
    pub fn pools(&self) -> Pools {
        Pools {
            dynamic: self.dynamic_pools.clone(),
            statics: self.static_pools.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderPolicy {
    /// MAIL FROM must be one of the subscriber's own addresses or domains.
    Owned,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    pub hostname: String,
    pub listen_starttls: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    /// What mail clients are told; defaults to `hostname`.
    pub public_hostname: Option<String>,
    pub public_starttls_port: u16,
    pub public_tls_port: u16,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_message_size: u64,
    pub sender_policy: SenderPolicy,
    pub limits: SubmissionLimits,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        SubmissionConfig {
            hostname: "localhost".into(),
            listen_starttls: vec![sock("0.0.0.0:587")],
            listen_tls: vec![sock("0.0.0.0:465")],
            public_hostname: None,
            public_starttls_port: 587,
            public_tls_port: 465,
            tls_cert: None,
            tls_key: None,
            max_message_size: 35 * 1024 * 1024,
            sender_policy: SenderPolicy::Owned,
            limits: SubmissionLimits::default(),
        }
    }
}

impl SubmissionConfig {
    pub fn public_hostname(&self) -> &str {
        self.public_hostname.as_deref().unwrap_or(&self.hostname)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionLimits {
    pub recipients_per_message: u32,
    pub messages_per_hour: u32,
    pub recipients_per_day: u32,
}

impl Default for SubmissionLimits {
    fn default() -> Self {
        SubmissionLimits {
            recipients_per_message: 100,
            messages_per_hour: 200,
            recipients_per_day: 1000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthBackend {
    /// argon2id hashes in the store.
    Local,
    /// PAP against the ISP's RADIUS servers.
    Radius,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub backend: AuthBackend,
    pub radius_servers: Vec<SocketAddr>,
    pub radius_secret: Option<String>,
    /// Failed logins (per login, and per client address) before a temporary lock.
    pub max_failures: u32,
    pub lockout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            backend: AuthBackend::Local,
            radius_servers: vec![],
            radius_secret: None,
            max_failures: 5,
            lockout: Duration::secs(900),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

/// A sending rate toward one recipient domain (large mailbox providers throttle
/// senders that burst).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRate {
    /// The recipient domain, or "*" for every domain without a line of its own.
    pub domain: String,
    pub per_minute: u32,
    /// Messages that may go at once before the rate applies (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl DomainRate {
    /// The burst in effect.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_minute.div_ceil(60)).max(1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// "host:port": send everything through this relay instead of MX routing.
    pub smart_host: Option<String>,
    /// Login for AUTH at the smart host (only with `smart_host`, with
    /// `smart_host_password_file`). AUTH is only ever sent over TLS.
    pub smart_host_user: Option<String>,
    /// A file holding the smart host password (trailing newline ignored), so the
    /// secret stays out of the configuration.
    pub smart_host_password_file: Option<PathBuf>,
    /// "ip:port" of the resolver to use instead of the system's.
    pub dns_server: Option<SocketAddr>,
    pub retry_schedule: Vec<Duration>,
    pub max_queue_time: Duration,
    pub dkim: Vec<DkimKey>,
    /// Simultaneous connections to one destination (recipient domain or smart host).
    pub connections_per_destination: u32,
    pub domain_rates: Vec<DomainRate>,
}

impl DeliveryConfig {
    /// The rate toward `domain`: its own line, else the "*" line, else none.
    pub fn rate_for(&self, domain: &str) -> Option<&DomainRate> {
        let own = self
            .domain_rates
            .iter()
            .find(|r| r.domain.eq_ignore_ascii_case(domain));
        own.or_else(|| self.domain_rates.iter().find(|r| r.domain == "*"))
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            smart_host: None,
            smart_host_user: None,
            smart_host_password_file: None,
            dns_server: None,
            retry_schedule: [300, 600, 1800, 3600, 7200, 14400]
                .map(Duration::secs)
                .to_vec(),
            max_queue_time: Duration::secs(5 * 86_400),
            dkim: vec![],
            connections_per_destination: 10,
            domain_rates: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClient {
    /// The NAS (BRAS) address or prefix allowed to send requests.
    pub address: IpNet,
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    pub listen_auth: Vec<SocketAddr>,
    pub listen_acct: Vec<SocketAddr>,
    pub clients: Vec<RadiusClient>,
    pub filter_blocked: String,
    pub filter_open: String,
    pub coa_port: u16,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            listen_auth: vec![sock("0.0.0.0:1812")],
            listen_acct: vec![sock("0.0.0.0:1813")],
            clients: vec![],
            filter_blocked: "port25-block".into(),
            filter_open: "port25-open".into(),
            coa_port: 3799,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    pub nftables: bool,
    pub table: String,
    /// Reject with a TCP reset (true) or drop silently (false).
    pub reject: bool,
    /// The ISP's own mail servers: always reachable on port 25.
    pub allowed_destinations: Vec<IpNet>,
    pub reconcile_interval: Duration,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            nftables: false,
            table: "portcullis".into(),
            reject: true,
            allowed_destinations: vec![],
            reconcile_interval: Duration::secs(60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseConfig {
    pub maildir: Option<PathBuf>,
    pub dnsbl_zones: Vec<String>,
    pub dnsbl_resolver: Option<SocketAddr>,
    pub dnsbl_interval: Duration,
    pub flow_listen: Vec<SocketAddr>,
    pub thresholds: AbuseThresholds,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            maildir: None,
            dnsbl_zones: vec![],
            dnsbl_resolver: None,
            dnsbl_interval: Duration::secs(3600),
            flow_listen: vec![],
            thresholds: AbuseThresholds::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseThresholds {
    pub complaints: u32,
    pub complaint_window: Duration,
    pub listings: u32,
    pub flow_destinations: u32,
    pub flow_window: Duration,
}

impl Default for AbuseThresholds {
    fn default() -> Self {
        AbuseThresholds {
            complaints: 1,
            complaint_window: Duration::secs(7 * 86_400),
            listings: 1,
            flow_destinations: 100,
            flow_window: Duration::secs(600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    pub listen: Vec<SocketAddr>,
    pub aup_text: String,
    pub static_ip_price: String,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            listen: vec![sock("127.0.0.1:8080")],
            aup_text: DEFAULT_AUP.trim().into(),
            static_ip_price: "5.00 per month".into(),
        }
    }
}

const DEFAULT_AUP: &str = "
I will send mail on port 25 only from mail servers I operate and keep secure. I will not
send unsolicited bulk mail. I understand that port 25 is blocked again, without notice,
if spam, a blacklisting or signs of an infected computer are seen from my connection.
";

fn net(s: &str) -> IpNet {
    s.parse()
        .unwrap_or_else(|e| unreachable!("built-in prefix {s}: {e}"))
}

fn sock(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| unreachable!("built-in address {s}: {e}"))
}

impl Config {
    /// Checks what parsing alone cannot; the error names the offending key.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: String| Err((key.to_string(), reason));
        let url = &self.store.url;
        let sqlite = url.strip_prefix("sqlite://").is_some_and(|p| !p.is_empty());
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !sqlite && !postgres {
            return bad(
                "store.url",
                format!(
                    "'{}' must be sqlite://PATH or postgres://...",
                    self.store.url
                ),
            );
        }
        if let Err(e) = Pools::new(
            self.network.dynamic_pools.clone(),
            self.network.static_pools.clone(),
        ) {
            return bad("network.static_pools", e.to_string());
        }
        if self.submission.hostname.trim().is_empty() {
            return bad("submission.hostname", "must not be empty".into());
        }
        if self.submission.tls_cert.is_some() != self.submission.tls_key.is_some() {
            return bad(
                "submission.tls_key",
                "tls_cert and tls_key go together: set both or neither".into(),
            );
        }
        if self.submission.max_message_size < 1024 {
            return bad(
                "submission.max_message_size",
                "must be at least 1024 bytes".into(),
            );
        }
        let l = &self.submission.limits;
        for (key, v) in [
            (
                "submission.limits.recipients_per_message",
                l.recipients_per_message,
            ),
            ("submission.limits.messages_per_hour", l.messages_per_hour),
            ("submission.limits.recipients_per_day", l.recipients_per_day),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.auth.backend == AuthBackend::Radius {
            if self.auth.radius_servers.is_empty() {
                return bad(
                    "auth.radius_servers",
                    "backend = \"radius\" needs at least one server".into(),
                );
            }
            if self.auth.radius_secret.as_deref().unwrap_or("").is_empty() {
                return bad(
                    "auth.radius_secret",
                    "backend = \"radius\" needs the shared secret".into(),
                );
            }
        }
        if self.auth.max_failures == 0 {
            return bad("auth.max_failures", "must be at least 1".into());
        }
        if self.delivery.retry_schedule.is_empty() {
            return bad(
                "delivery.retry_schedule",
                "needs at least one interval".into(),
            );
        }
        if let Some(host) = &self.delivery.smart_host {
            if !host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return bad("delivery.smart_host", format!("'{host}' must be host:port"));
            }
        }
        let d = &self.delivery;
        match (&d.smart_host_user, &d.smart_host_password_file) {
            (Some(_), None) | (None, Some(_)) => {
                return bad(
                    "delivery.smart_host_user",
                    "smart_host_user and smart_host_password_file go together: set both or neither"
                        .into(),
                )
            }
            (Some(user), Some(_)) => {
                if d.smart_host.is_none() {
                    return bad(
                        "delivery.smart_host_user",
                        "AUTH credentials need delivery.smart_host".into(),
                    );
                }
                if user.is_empty() || user.contains(|c: char| c.is_control()) {
                    return bad(
                        "delivery.smart_host_user",
                        "must be a non-empty name without control characters".into(),
                    );
                }
            }
            (None, None) => {}
        }
        if d.connections_per_destination == 0 {
            return bad(
                "delivery.connections_per_destination",
                "must be at least 1".into(),
            );
        }
        for (i, r) in d.domain_rates.iter().enumerate() {
            let key = format!("delivery.domain_rates[{i}]");
            if r.per_minute == 0 || r.burst == Some(0) {
                return bad(&key, "per_minute and burst must be at least 1".into());
            }
            if r.domain != "*" && (r.domain.is_empty() || r.domain.contains(['@', ' ', '*'])) {
                return bad(&key, format!("'{}' is not a domain or \"*\"", r.domain));
            }
            if d.domain_rates[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&r.domain))
            {
                return bad(&key, format!("{} has two rates", r.domain));
            }
        }
        for (i, c) in self.radius.clients.iter().enumerate() {
            if c.secret.is_empty() {
                return bad(
                    &format!("radius.clients[{i}].secret"),
                    "must not be empty".into(),
                );
            }
        }
        for (key, f) in [
            ("radius.filter_blocked", &self.radius.filter_blocked),
            ("radius.filter_open", &self.radius.filter_open),
        ] {
            if f.is_empty() || f.len() > 253 {
                return bad(key, "must be 1 to 253 characters".into());
            }
        }
        let t = &self.enforce.table;
        if t.is_empty()
            || t.len() > 64
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || t.as_bytes()[0].is_ascii_digit()
        {
            return bad(
                "enforce.table",
                format!(
                    "'{t}' must be a name of letters, digits, _ and - (not starting with a digit)"
                ),
            );
        }
        for (i, z) in self.abuse.dnsbl_zones.iter().enumerate() {
            if z.is_empty() || z.contains(char::is_whitespace) || z.starts_with('.') {
                return bad(
                    &format!("abuse.dnsbl_zones[{i}]"),
                    format!("'{z}' is not a DNS zone"),
                );
            }
        }
        Ok(())
    }
}
