//! The abuse loop end to end against both store backends: complaints ingested,
//! attributed, cases opened, opted-out subscribers re-instated, notices queued.

mod common;

use common::*;
use policy::{Port25State, Timestamp};

use abuse::IngestOutcome;

async fn complaint_reinstates_opted_out_subscriber(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "alice", "100.64.1.5").await;
    opt_out(store, "alice").await;
    assert_eq!(
        store.subscriber("alice").await.unwrap().port25,
        Port25State::OptedOut
    );
    let cursor = store.last_event_id().await.unwrap();

    let raw = arf(Some("100.64.1.5"), T0 - 60, "spam1@pc", "message/rfc822");
    let out = abuse::ingest_bytes(&env.config, store, raw.as_bytes())
        .await
        .unwrap();
    let IngestOutcome::Recorded {
        login,
        actions,
        case_id,
        ..
    } = out
    else {
        panic!("expected a recorded complaint, got {out:?}");
    };
    assert_eq!(login.as_deref(), Some("alice"));
    assert!(case_id.is_some());
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(matches!(
        actions[0].decision,
        abuse::Decision::Reinstate { .. }
    ));
    assert_eq!(actions[0].notice_status.as_deref(), Some("queued"));

    let sub = store.subscriber("alice").await.unwrap();
    assert_eq!(sub.port25, Port25State::Reinstated);
    let audit = store.audit(Some("alice"), 10).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, "reinstate");
    assert_eq!(last.actor.to_string(), "system:abuse");
    let events = store.events_after(cursor, 100).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "port25.changed" && e.payload["to"] == "reinstated"));

    let notices = store.notices(Some("alice"), 10).await.unwrap();
    assert_eq!(notices.len(), 1);
    let n = &notices[0];
    assert_eq!(n.kind, "reinstated");
    assert_eq!(n.status, "queued");
    assert!(n.queue_id.is_some());
    assert_eq!(n.recipient.as_deref(), Some("alice@home.example"));
    assert!(n.body.contains("100.64.1.5"), "{}", n.body);
    assert!(
        !n.body.contains("bigmail"),
        "complainant leaked: {}",
        n.body
    );
    assert!(!n.body.contains("fbl-secret-reporter"));
    // Queued as an email through portcullis' own queue.
    let queue_id = n.queue_id.as_deref().unwrap();
    let body = store
        .queue_body(queue_id)
        .await
        .unwrap()
        .expect("queued notice");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("To: <alice@home.example>\r\n"), "{body}");
    assert!(body.contains("From: Abuse desk <abuse@mail.isp.example>\r\n"));
    assert!(body.contains("Subject: Outgoing port 25 blocked again on your connection\r\n"));
    assert!(store.queue_message(queue_id).await.unwrap().is_some());

    // The same report again counts once.
    let again = abuse::ingest_bytes(&env.config, store, raw.as_bytes())
        .await
        .unwrap();
    assert!(matches!(again, IngestOutcome::Duplicate { .. }));
    let cases = abuse::cases(store, Some("alice")).await.unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].evidence_count, 1);
    assert_eq!(cases[0].status, "open");
    assert_eq!(abuse::cases(store, None).await.unwrap().len(), 1);

    // A second, different complaint joins the same case; no second transition.
    let raw2 = arf(None, T0 - 30, "spam2@pc", "text/rfc822-headers");
    let out2 = abuse::ingest_bytes(&env.config, store, raw2.as_bytes())
        .await
        .unwrap();
    let IngestOutcome::Recorded { actions, .. } = out2 else {
        panic!("{out2:?}");
    };
    assert!(actions.is_empty(), "{actions:?}");
    let cases = store.abuse_cases(Some("alice")).await.unwrap();
    assert_eq!(cases[0].evidence_count, 2);
    assert_eq!(cases[0].by_kind.get("complaint"), Some(&2));
}
both_backends!(
    complaint_reinstates,
    complaint_reinstates_opted_out_subscriber
);

async fn unattributed_evidence_says_why(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "bob", "100.64.2.2").await;
    // Before bob's lease started: nobody held it.
    let early = arf(Some("100.64.2.2"), T0 - 7200, "e@x", "message/rfc822");
    let out = abuse::ingest_bytes(&env.config, store, early.as_bytes())
        .await
        .unwrap();
    let IngestOutcome::Recorded {
        unattributed,
        login,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(login, None);
    let why = unattributed.unwrap();
    assert!(why.starts_with("no lease for 100.64.2.2 at "), "{why}");
    let outside = arf(Some("203.0.113.9"), T0 - 60, "o@x", "message/rfc822");
    let IngestOutcome::Recorded { unattributed, .. } =
        abuse::ingest_bytes(&env.config, store, outside.as_bytes())
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        unattributed.as_deref(),
        Some("address 203.0.113.9 is outside our pools")
    );
    let none =
        arf(None, T0 - 60, "n@x", "message/rfc822").replace("([100.64.1.5])", "([192.0.2.77])");
    let IngestOutcome::Recorded { unattributed, .. } =
        abuse::ingest_bytes(&env.config, store, none.as_bytes())
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        unattributed.as_deref(),
        Some("no source address in the evidence")
    );
    assert_eq!(store.evidence_of(None, 10).await.unwrap().len(), 3);
    assert!(store.abuse_cases(None).await.unwrap().is_empty());
    // Blocked bob: a complaint opens a case, changes nothing.
    let during = arf(Some("100.64.2.2"), T0 - 60, "d@x", "message/rfc822");
    let IngestOutcome::Recorded { login, actions, .. } =
        abuse::ingest_bytes(&env.config, store, during.as_bytes())
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(login.as_deref(), Some("bob"));
    assert!(actions.is_empty());
    assert_eq!(
        store.subscriber("bob").await.unwrap().port25,
        Port25State::Blocked
    );
}
both_backends!(unattributed, unattributed_evidence_says_why);

async fn ingest_path_reads_files_mboxes_and_maildirs(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "carol", "100.64.3.3").await;
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(
        md.join("new/1.eml"),
        arf(Some("100.64.3.3"), T0 - 10, "m1@x", "message/rfc822"),
    )
    .unwrap();
    std::fs::write(
        md.join("cur/2.eml:2,S"),
        arf(Some("100.64.3.3"), T0 - 20, "m2@x", "message/rfc822"),
    )
    .unwrap();
    std::fs::write(md.join("new/3.eml"), b"garbage without headers\n").unwrap();
    let report = abuse::ingest_path(&env.config, store, &md).await.unwrap();
    assert_eq!(
        (report.recorded, report.duplicates, report.refused),
        (2, 0, 1)
    );
    let refused = report.items.iter().find(|i| i.refused.is_some()).unwrap();
    assert!(refused.source.ends_with("3.eml"));
    assert!(refused
        .refused
        .as_deref()
        .unwrap()
        .contains("no header fields"));

    let mbox = dir.path().join("complaints.mbox");
    let mut data = String::new();
    for id in ["m1@x", "m3@x", "m4@x"] {
        data.push_str("From fbl@bigmail.example Thu Nov 26 10:00:00 2026\n");
        data.push_str(
            &arf(Some("100.64.3.3"), T0 - 10, id, "message/rfc822").replace("\r\n", "\n"),
        );
        data.push('\n');
    }
    std::fs::write(&mbox, data).unwrap();
    let report = abuse::ingest_path(&env.config, store, &mbox).await.unwrap();
    assert_eq!(
        (report.recorded, report.duplicates, report.refused),
        (2, 1, 0),
        "{report:?}"
    );
    assert!(report.items[0].source.ends_with("#1"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["items"][0]["outcome"], "duplicate");

    // The maildir watcher moves what it read from new/ to cur/.
    let engine = abuse::Engine::new(&env.config, store.clone());
    let n = abuse::scan_maildir(&engine, &md).await.unwrap();
    assert_eq!(n, 2);
    assert!(md.join("cur/1.eml:2,S").exists());
    assert!(md.join("cur/3.eml:2,T").exists());
    assert!(std::fs::read_dir(md.join("new")).unwrap().next().is_none());

    let missing = abuse::ingest_path(&env.config, store, &dir.path().join("nope")).await;
    assert!(missing.unwrap_err().to_string().starts_with("cannot read "));
    let _ = Timestamp(0);
}
both_backends!(ingest_path, ingest_path_reads_files_mboxes_and_maildirs);

async fn suspension_is_recorded_and_lifted(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "dave", "100.64.4.4").await;
    let actor = abuse::engine::actor();
    assert!(store
        .set_suspended("dave", true, &actor, "test")
        .await
        .unwrap());
    assert!(!store
        .set_suspended("dave", true, &actor, "test")
        .await
        .unwrap());
    assert!(store.subscriber("dave").await.unwrap().suspended);
    assert!(store
        .set_suspended("dave", false, &op(), "cleaned")
        .await
        .unwrap());
    assert!(!store.subscriber("dave").await.unwrap().suspended);
    assert!(store
        .set_suspended("nobody", true, &actor, "x")
        .await
        .is_err());
}
both_backends!(suspension, suspension_is_recorded_and_lifted);

async fn submission_anomaly_suspends(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "erin", "100.64.5.5").await;
    let engine = abuse::Engine::new(&env.config, store.clone());
    let watch = abuse::SubmissionWatch::with_engine(
        engine,
        abuse::AnomalyLimits {
            distinct_recipients_per_hour: 5,
            ..Default::default()
        },
    );
    assert!(watch
        .accepted("erin", &["a@x", "b@x"])
        .await
        .unwrap()
        .is_none());
    let (anomaly, actions) = watch
        .accepted("erin", &["c@x", "d@x", "e@x", "f@x"])
        .await
        .unwrap()
        .expect("anomaly");
    assert_eq!(anomaly.distinct_recipients, 6);
    assert_eq!(actions.len(), 1);
    assert!(matches!(
        actions[0].decision,
        abuse::Decision::Suspend { .. }
    ));
    assert!(store.subscriber("erin").await.unwrap().suspended);
    let n = store.notices(Some("erin"), 5).await.unwrap();
    assert_eq!(n[0].kind, "suspended");
    assert!(n[0].body.contains("change your password"));
    let cases = store.abuse_cases(Some("erin")).await.unwrap();
    assert_eq!(cases[0].by_kind.get("anomaly"), Some(&1));
    // Port 25 untouched; an operator lifts the suspension.
    assert_eq!(
        store.subscriber("erin").await.unwrap().port25,
        Port25State::Blocked
    );
    assert!(store
        .set_suspended("erin", false, &op(), "password changed")
        .await
        .unwrap());
}
both_backends!(anomaly, submission_anomaly_suspends);

async fn serve_watches_the_maildir(env: Env) {
    let store = &env.store;
    dynamic_with_lease(store, "gina", "100.64.6.6").await;
    opt_out(store, "gina").await;
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("abuse-maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let mut config = env.config.clone();
    config.abuse.maildir = Some(md.clone());
    config.abuse.flow_listen = vec!["127.0.0.1:0".parse().unwrap()];
    let tasks = abuse::start(std::sync::Arc::new(config), store.clone())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 2);
    std::fs::write(
        md.join("tmp/c1"),
        arf(Some("100.64.6.6"), T0 - 5, "w@x", "message/rfc822"),
    )
    .unwrap();
    std::fs::rename(md.join("tmp/c1"), md.join("new/c1")).unwrap();
    let mut state = Port25State::OptedOut;
    for _ in 0..100 {
        state = store.subscriber("gina").await.unwrap().port25;
        if state == Port25State::Reinstated {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, Port25State::Reinstated);
    for t in tasks {
        t.abort();
    }
}
both_backends!(serve_maildir, serve_watches_the_maildir);

async fn batched_and_single_attribution_agree(env: Env) {
    let store = &env.store;
    let mut config = env.config.clone();
    config
        .network
        .dynamic_pools
        .push("2001:db8:8000::/33".parse().unwrap());
    dynamic_with_lease(store, "hana", "100.64.7.7").await;
    // An IPv6 subscriber holding a delegated /56.
    store
        .add_subscriber(
            &store::NewSubscriber {
                login: "ivan".into(),
                display_name: None,
                email: None,
                plan: policy::Plan::Dynamic,
                static_ips: vec![],
                password_hash: None,
            },
            &op(),
        )
        .await
        .unwrap();
    store
        .open_lease(&store::NewLease {
            login: "ivan".into(),
            net: "2001:db8:8000:1200::/56".parse().unwrap(),
            start: policy::Timestamp(T0 - 3600),
            end: None,
            source: policy::LeaseSource::Radius,
            session_id: Some("s-ivan".into()),
            nas: Some(ip("10.0.0.1")),
        })
        .await
        .unwrap();
    let engine = abuse::Engine::new(&config, store.clone());
    let items = vec![
        (Some(ip("100.64.7.7")), policy::Timestamp(T0 - 10)),
        (
            Some(ip("2001:db8:8000:12ab::25")),
            policy::Timestamp(T0 - 10),
        ),
        (
            Some(ip("2001:db8:8000:1300::1")),
            policy::Timestamp(T0 - 10),
        ),
        (Some(ip("100.64.7.7")), policy::Timestamp(T0 - 7200)),
        (Some(ip("8.8.8.8")), policy::Timestamp(T0 - 10)),
        (None, policy::Timestamp(T0 - 10)),
    ];
    let batched = engine.attribute_many(&items).await.unwrap();
    let mut single = Vec::new();
    for (ip, at) in &items {
        single.push(engine.attribute(*ip, *at).await.unwrap());
    }
    assert_eq!(batched, single);
    assert_eq!(batched[0].login.as_deref(), Some("hana"));
    assert_eq!(batched[1].login.as_deref(), Some("ivan"));
    assert!(batched[2]
        .unattributed
        .as_deref()
        .unwrap()
        .starts_with("no lease for 2001:db8:8000:1300::1"));
    assert!(batched[3].unattributed.is_some());
    assert!(batched[4]
        .unattributed
        .as_deref()
        .unwrap()
        .contains("outside our pools"));
}
both_backends!(attribution, batched_and_single_attribution_agree);
