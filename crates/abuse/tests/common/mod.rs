//! Shared test set-up: a store on SQLite (temp file) or PostgreSQL (127.0.0.1:5432, a
//! schema per test), a fixed clock, subscribers with leases, and ARF samples.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use policy::{Actor, FixedClock, IpNet, LeaseSource, Plan, Port25Action, Timestamp};
use store::{NewLease, NewSubscriber, Store};

pub const T0: i64 = 1_800_000_000;

pub struct Env {
    pub store: Store,
    pub clock: FixedClock,
    pub config: config::Config,
    pub _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let clock = FixedClock::at(Timestamp(T0));
    let store = Store::open_with_clock(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    Env {
        store,
        clock,
        config: test_config(),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Env {
    let url = store::testing::fresh_postgres_schema("abuse")
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    let clock = FixedClock::at(Timestamp(T0));
    let store = Store::open_with_clock(&url, Arc::new(clock.clone()))
        .await
        .unwrap();
    Env {
        store,
        clock,
        config: test_config(),
        _dir: None,
    }
}

#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::common::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::common::postgres().await).await;
            }
        }
    };
}

pub fn test_config() -> config::Config {
    let mut c = config::Config::default();
    c.submission.hostname = "mail.isp.example".into();
    c
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn op() -> Actor {
    Actor::Operator("ann".into())
}

/// A dynamic subscriber holding `addr` since an hour before T0, with an email.
pub async fn dynamic_with_lease(store: &Store, login: &str, addr: &str) {
    store
        .add_subscriber(
            &NewSubscriber {
                login: login.into(),
                display_name: None,
                email: Some(format!("{login}@home.example")),
                plan: Plan::Dynamic,
                static_ips: vec![],
                password_hash: None,
            },
            &op(),
        )
        .await
        .unwrap();
    store
        .open_lease(&NewLease {
            login: login.into(),
            net: IpNet::host(ip(addr)),
            start: Timestamp(T0 - 3600),
            end: None,
            source: LeaseSource::Radius,
            session_id: Some(format!("s-{login}")),
            nas: Some(ip("10.0.0.1")),
        })
        .await
        .unwrap();
}

pub async fn opt_out(store: &Store, login: &str) {
    store
        .transition(
            login,
            Port25Action::RequestOptOut { aup_accepted: true },
            &Actor::Customer(login.into()),
            "own mail server",
        )
        .await
        .unwrap();
    store
        .transition(login, Port25Action::ApproveOptOut, &op(), "ok")
        .await
        .unwrap();
}

pub fn rfc2822(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap()
}

/// An ARF report as large mailbox providers send it.
pub fn arf(source_ip: Option<&str>, arrival: i64, msgid: &str, original_type: &str) -> String {
    let src = source_ip
        .map(|ip| format!("Source-IP: {ip}\r\n"))
        .unwrap_or_default();
    let date = rfc2822(arrival);
    format!(
        "From: Complaints <fbl-secret-reporter@bigmail.example>\r\n\
Date: {date}\r\n\
Subject: complaint about message from {msgid}\r\n\
To: abuse@isp.example\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is an email abuse report.\r\n\
--b1\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: BigMail-FBL/2.1\r\n\
Version: 1\r\n\
Original-Mail-From: <x@spam.example>\r\n\
Arrival-Date: {date}\r\n\
{src}Reported-Domain: spam.example\r\n\
\r\n\
--b1\r\n\
Content-Type: {original_type}\r\n\
\r\n\
Received: from pc ([100.64.1.5]) by mx.bigmail.example; {date}\r\n\
From: <x@spam.example>\r\n\
To: <victim@bigmail.example>\r\n\
Message-ID: <{msgid}>\r\n\
Subject: cheap pills\r\n\
Date: {date}\r\n\
\r\n\
buy now\r\n\
--b1--\r\n"
    )
}
