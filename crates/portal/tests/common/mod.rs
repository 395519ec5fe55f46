//! Test harness: a real portal (`portal::start`) on a loopback port chosen at run
//! time, over a temporary SQLite store, and a small HTTP/1.1 client with a cookie jar.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use policy::{Actor, IpNet, LeaseSource, Plan, Timestamp};
use store::{NewLease, NewSubscriber, OperatorRole, Store};

pub const PASSWORD: &str = "correct horse battery";

pub struct Portal {
    pub addr: SocketAddr,
    pub store: Store,
    pub config: Arc<config::Config>,
    pub dir: tempfile::TempDir,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Which store backend a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    /// PostgreSQL on 127.0.0.1:5432, database `test`, user `postgres` (as the store's
    /// own tests use); each portal gets a fresh schema.
    Postgres,
}

async fn postgres_url() -> String {
    store::testing::fresh_postgres_schema("portal")
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)")
}

/// Defines `mod $name { sqlite, postgres }`, both running `$name(backend)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    };
}

/// Starts a portal on SQLite; see [`start_on`].
pub async fn start(tweak: impl FnOnce(&mut config::Config)) -> Portal {
    start_on(Backend::Sqlite, tweak).await
}

/// Starts a portal with two dynamic subscribers (alice, bob), one static (carol),
/// and operators sam (support), abe (abuse), ada (admin), all with [`PASSWORD`].
pub async fn start_on(backend: Backend, tweak: impl FnOnce(&mut config::Config)) -> Portal {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("portal.db").display()),
        Backend::Postgres => postgres_url().await,
    };
    let store = Store::open(&url).await.expect("store opens");
    let mut cfg = config::Config::default();
    cfg.store.url = url;
    cfg.network.static_pools = vec!["198.51.100.0/29".parse().unwrap()];
    cfg.submission.public_hostname = Some("smtp.isp.example".into());
    cfg.submission.public_starttls_port = 2587;
    cfg.submission.public_tls_port = 2465;
    cfg.portal.static_ip_price = "7.50 EUR per month".into();
    let port = free_port();
    cfg.portal.listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    tweak(&mut cfg);
    let hash = store::password::hash_password(PASSWORD);
    let sys = Actor::System("test".into());
    for (login, plan, ip) in [
        ("alice", Plan::Dynamic, None),
        ("bob", Plan::Dynamic, None),
        ("carol", Plan::Static, Some("198.51.100.1/32")),
    ] {
        store
            .add_subscriber(
                &NewSubscriber {
                    login: login.into(),
                    display_name: Some(format!("{login} example")),
                    email: Some(format!("{login}@home.example")),
                    plan,
                    static_ips: ip
                        .map(|i: &str| i.parse::<IpNet>().unwrap())
                        .into_iter()
                        .collect(),
                    password_hash: Some(hash.clone()),
                },
                &sys,
            )
            .await
            .expect("subscriber added");
    }
    let now = store.now();
    store
        .open_lease(&NewLease {
            login: "alice".into(),
            net: "100.64.1.2/32".parse().unwrap(),
            start: Timestamp(now.0 - 3600),
            end: None,
            source: LeaseSource::Radius,
            session_id: Some("s1".into()),
            nas: Some("192.0.2.1".parse().unwrap()),
        })
        .await
        .expect("lease opened");
    for (name, role) in [
        ("sam", OperatorRole::Support),
        ("abe", OperatorRole::Abuse),
        ("ada", OperatorRole::Admin),
    ] {
        store
            .add_operator(name, role, &hash)
            .await
            .expect("operator added");
    }
    let config = Arc::new(cfg);
    let extra: portal::MetricsSource = Arc::new(|| "portcullis_test_extra 42\n".to_string());
    let handles = portal::start(config.clone(), store.clone(), vec![extra])
        .await
        .expect("portal starts");
    Portal {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        store,
        config,
        dir,
        handles,
    }
}

impl Portal {
    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            cookies: BTreeMap::new(),
        }
    }

    pub async fn token(&self, operator: &str) -> String {
        portal::create_api_token(&self.store, operator)
            .await
            .expect("token created")
    }

    /// A customer client, logged in.
    pub fn customer(&self, login: &str) -> Client {
        let mut c = self.client();
        let r = c.login("/login", &[("login", login), ("password", PASSWORD)]);
        assert_eq!(r.status, 303, "customer {login} logs in: {}", r.body);
        c
    }

    /// An operator client, logged in to the console.
    pub fn operator(&self, name: &str) -> Client {
        let mut c = self.client();
        let r = c.login("/console/login", &[("name", name), ("password", PASSWORD)]);
        assert_eq!(r.status, 303, "operator {name} logs in: {}", r.body);
        c
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first CSRF token in a page's forms.
    pub fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.body.find(marker).expect("page has a CSRF field") + marker.len();
        let len = self.body[start..].find('"').expect("closing quote");
        self.body[start..start + len].to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A blocking HTTP/1.1 client (one connection per request) with a cookie jar.
/// Blocking is fine: the server runs on the test's multi-threaded runtime.
pub struct Client {
    pub addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut s = TcpStream::connect(self.addr).expect("connect to portal");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send request");
        s.write_all(body).expect("send body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response has headers");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut body = raw[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let first = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = first.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        }
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form(fields).as_bytes(),
        )
    }

    /// GET the login page, then POST it with its CSRF token.
    pub fn login(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let page = self.get(path);
        assert_eq!(page.status, 200, "{path}");
        let csrf = page.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_form(path, &all)
    }

    pub fn api(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        self.request(method, path, &headers, body.as_bytes())
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}
