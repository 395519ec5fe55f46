//! HTTP-level tests of every route: status codes, headers, cookies, CSRF and role
//! refusals, customer separation, the API and its OpenAPI document.

mod common;

use common::{start_on, Backend, PASSWORD};
use serde_json::json;

const CUSTOMER_PAGES: &[&str] = &[
    "/",
    "/sending",
    "/sending/portcullis.mobileconfig",
    "/optout",
    "/static-address",
    "/notices",
    "/support",
    "/password",
];

const CONSOLE_PAGES: &[&str] = &[
    "/console/",
    "/console/subscribers",
    "/console/subscribers?q=ali",
    "/console/subscribers/alice",
    "/console/whois",
    "/console/whois?ip=100.64.1.2",
    "/console/optouts",
    "/console/static-requests",
    "/console/support",
    "/console/abuse",
    "/console/queue",
    "/console/audit",
    "/console/audit?login=alice",
    "/console/operators",
];

async fn security_headers_on_every_kind_of_response(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut c = p.client();
    for path in [
        "/login",
        "/healthz",
        "/console/login",
        "/api/v1/openapi.json",
        "/nope",
        "/metrics",
        "/assets/portal.css",
    ] {
        let r = c.get(path);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: CSP {csp:?}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert!(
            r.header("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    assert_eq!(c.get("/healthz").body, "ok\n");
    assert_eq!(c.get("/nope").status, 404);
    let css = c.get("/assets/portal.css");
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

async fn customer_login_needs_csrf_sets_strict_cookie_and_logout_ends_it(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut c = p.client();
    // Not logged in: pages redirect to the login, posts are refused.
    assert_eq!(c.get("/").status, 303);
    assert_eq!(c.get("/").header("location"), Some("/login"));
    let page = c.get("/login");
    let pre = page.all("set-cookie").join("\n");
    assert!(
        pre.contains("pc_login_csrf=")
            && pre.contains("HttpOnly")
            && pre.contains("SameSite=Strict")
    );
    // No token, a wrong token: refused before the password is even looked at.
    let r = c.post_form("/login", &[("login", "alice"), ("password", PASSWORD)]);
    assert_eq!(r.status, 403);
    let r = c.post_form(
        "/login",
        &[
            ("csrf", &"0".repeat(64)),
            ("login", "alice"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 403);
    // Wrong password.
    let r = c.login(
        "/login",
        &[("login", "alice"), ("password", "wrong password")],
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong login or password"));
    // Unknown login: the same answer.
    let r = c.login("/login", &[("login", "nobody"), ("password", PASSWORD)]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong login or password"));
    // Right password.
    let r = c.login("/login", &[("login", "alice"), ("password", PASSWORD)]);
    assert_eq!(r.status, 303);
    let cookie = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("pc_customer="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let home = c.get("/");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("alice") && home.body.contains(r#"data-state="blocked""#));
    assert!(
        home.body.contains("100.64.1.2"),
        "current address from the open lease"
    );
    assert!(
        home.body.contains("What still works"),
        "the block is explained"
    );
    // Logout needs the CSRF token too.
    assert_eq!(c.post_form("/logout", &[]).status, 403);
    let csrf = home.csrf();
    let r = c.post_form("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(c.get("/").status, 303, "session gone");
}

async fn failed_logins_are_throttled(b: Backend) {
    let p = start_on(b, |c| c.auth.max_failures = 3).await;
    let mut c = p.client();
    for _ in 0..3 {
        assert_eq!(
            c.login("/login", &[("login", "bob"), ("password", "bad")])
                .status,
            401
        );
    }
    let r = c.login("/login", &[("login", "bob"), ("password", PASSWORD)]);
    assert_eq!(r.status, 429, "locked even with the right password");
    assert!(r.body.contains("too many failed logins"));
    // Operators too.
    for _ in 0..3 {
        assert_eq!(
            c.login("/console/login", &[("name", "ada"), ("password", "bad")])
                .status,
            401
        );
    }
    assert_eq!(
        c.login("/console/login", &[("name", "ada"), ("password", PASSWORD)])
            .status,
        429
    );
    // Another customer is not locked out by bob's failures.
    assert_eq!(
        c.login("/login", &[("login", "alice"), ("password", PASSWORD)])
            .status,
        303
    );
}

async fn every_customer_and_console_page_renders(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut alice = p.customer("alice");
    for path in CUSTOMER_PAGES {
        let r = alice.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let mut ada = p.operator("ada");
    for path in CONSOLE_PAGES {
        let r = ada.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let dash = ada.get("/console/");
    assert!(
        dash.body.matches("<svg").count() >= 4,
        "charts are inline SVG"
    );
    assert!(!dash.body.contains("<script"), "no scripts anywhere");
    assert!(ada
        .get("/console/subscribers?q=ali")
        .body
        .contains("/console/subscribers/alice"));
    assert!(ada
        .get("/console/whois?ip=100.64.1.2")
        .body
        .contains("by <a href=\"/console/subscribers/alice\">alice</a>"));
    assert!(ada
        .get("/console/whois?ip=100.64.9.9")
        .body
        .contains("Nobody held"));
    assert_eq!(ada.get("/console/whois?ip=not-an-ip").status, 400);
    assert_eq!(ada.get("/console/subscribers/nobody").status, 404);
    assert_eq!(ada.get("/console").status, 303);
}

async fn optout_request_then_operator_approval_opens_port_25(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut alice = p.customer("alice");
    let page = alice.get("/optout");
    assert!(
        page.body.contains("I will send mail on port 25 only"),
        "AUP shown"
    );
    let csrf = page.csrf();
    // CSRF refused; AUP not accepted refused; empty reason refused.
    assert_eq!(
        alice
            .post_form(
                "/optout",
                &[("accept_aup", "yes"), ("reason", "mail server")]
            )
            .status,
        403
    );
    let r = alice.post_form(
        "/optout",
        &[("csrf", &csrf), ("reason", "I run a mail server")],
    );
    assert_eq!(r.status, 409);
    assert!(r.body.contains("acceptable use policy must be accepted"));
    assert_eq!(
        alice
            .post_form(
                "/optout",
                &[("csrf", &csrf), ("accept_aup", "yes"), ("reason", " ")]
            )
            .status,
        400
    );
    let r = alice.post_form(
        "/optout",
        &[
            ("csrf", &csrf),
            ("accept_aup", "yes"),
            ("reason", "I run a mail server"),
        ],
    );
    assert_eq!(r.status, 303);
    assert!(alice
        .get("/optout")
        .body
        .contains(r#"data-status="pending""#));
    // A support operator sees the queue but may not decide.
    let mut sam = p.operator("sam");
    let q = sam.get("/console/optouts");
    assert!(q.body.contains("alice") && q.body.contains("abuse role needed"));
    let r = sam.post_form(
        "/console/optouts/alice",
        &[("csrf", &q.csrf()), ("decision", "approve")],
    );
    assert_eq!(r.status, 403);
    // The abuse desk approves: without the token refused, with it done.
    let mut abe = p.operator("abe");
    let q = abe.get("/console/optouts");
    assert_eq!(
        abe.post_form("/console/optouts/alice", &[("decision", "approve")])
            .status,
        403
    );
    let r = abe.post_form(
        "/console/optouts/alice",
        &[
            ("csrf", &q.csrf()),
            ("decision", "approve"),
            ("reason", "looks fine"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let home = alice.get("/");
    assert!(
        home.body.contains(r#"data-state="opted-out""#),
        "{}",
        home.body
    );
    assert!(alice
        .get("/optout")
        .body
        .contains(r#"data-status="approved""#));
    let audit = p.store.audit(Some("alice"), 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "optout-approve" && a.actor.to_string() == "operator:abe"));
    // Block: the customer sees a notice and cannot re-request.
    let d = abe.get("/console/subscribers/alice");
    let r = abe.post_form(
        "/console/subscribers/alice/port25",
        &[
            ("csrf", &d.csrf()),
            ("action", "block"),
            ("reason", "spam complaint from example.net"),
        ],
    );
    assert_eq!(r.status, 303);
    assert!(alice
        .get("/notices")
        .body
        .contains("spam complaint from example.net"));
    assert!(alice
        .get("/optout")
        .body
        .contains(r#"id="optout-unavailable""#));
    // Deny flow for bob, with the reason shown to him.
    let mut bob = p.customer("bob");
    let c = bob.get("/optout").csrf();
    bob.post_form(
        "/optout",
        &[("csrf", &c), ("accept_aup", "yes"), ("reason", "testing")],
    );
    let q = abe.get("/console/optouts");
    let r = abe.post_form(
        "/console/optouts/bob",
        &[("csrf", &q.csrf()), ("decision", "deny")],
    );
    assert_eq!(r.status, 400, "denial needs a reason");
    abe.post_form(
        "/console/optouts/bob",
        &[
            ("csrf", &q.csrf()),
            ("decision", "deny"),
            ("reason", "use the submission server"),
        ],
    );
    let page = bob.get("/optout");
    assert!(
        page.body.contains(r#"data-status="denied""#)
            && page.body.contains("use the submission server")
    );
}

async fn static_subscribers_are_not_offered_an_optout(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut carol = p.customer("carol");
    let page = carol.get("/optout");
    assert!(page.body.contains("static address, which is exempt"));
    assert!(!page.body.contains(r#"name="accept_aup""#));
    let r = carol.post_form(
        "/optout",
        &[
            ("csrf", &page.csrf()),
            ("accept_aup", "yes"),
            ("reason", "x"),
        ],
    );
    assert_eq!(r.status, 409);
}

async fn a_customer_sees_only_their_own_data(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut alice = p.customer("alice");
    let mut bob = p.customer("bob");
    let c = alice.get("/support").csrf();
    let r = alice.post_form(
        "/support",
        &[
            ("csrf", &c),
            ("subject", "slow line"),
            ("body", "since Monday"),
        ],
    );
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(alice.get(&loc).status, 200);
    // Bob tries alice's request id, and ids that do not exist.
    assert_eq!(bob.get(&loc).status, 404);
    assert!(!bob.get(&loc).body.contains("since Monday"));
    assert_eq!(bob.get("/support/999").status, 404);
    assert_eq!(bob.get("/support/abc").status, 404);
    assert!(!bob.get("/support").body.contains("slow line"));
    // Bob's CSRF token does not work with alice's session.
    let bob_csrf = bob.get("/").csrf();
    assert_eq!(
        alice
            .post_form(
                "/optout",
                &[("csrf", &bob_csrf), ("accept_aup", "yes"), ("reason", "x")]
            )
            .status,
        403
    );
    // A field naming another login is ignored: the request is bob's own.
    let c = bob.get("/optout").csrf();
    bob.post_form(
        "/optout",
        &[
            ("csrf", &c),
            ("accept_aup", "yes"),
            ("reason", "mine"),
            ("login", "alice"),
        ],
    );
    assert_eq!(
        p.store.subscriber("alice").await.unwrap().port25.as_str(),
        "blocked"
    );
    assert_eq!(
        p.store.subscriber("bob").await.unwrap().port25.as_str(),
        "optout-pending"
    );
    // Console and API are closed to customer sessions, even with the cookie renamed.
    let r = alice.get("/console/");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/login"))
    );
    assert_eq!(alice.get("/console/subscribers/bob").status, 303);
    assert_eq!(alice.get("/api/v1/subscribers/bob").status, 401);
    let session = alice.cookies.get("pc_customer").cloned().unwrap();
    alice.cookies.insert("pc_operator".into(), session);
    assert_eq!(alice.get("/console/subscribers/bob").status, 303);
    // And an operator session is not a customer session.
    let mut ada = p.operator("ada");
    let op = ada.cookies.get("pc_operator").cloned().unwrap();
    ada.cookies.insert("pc_customer".into(), op);
    assert_eq!(ada.get("/").status, 303);
}

async fn roles_are_enforced_in_console_and_api(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut sam = p.operator("sam");
    let d = sam.get("/console/subscribers/bob");
    assert!(d.body.contains("needs the abuse role"));
    let r = sam.post_form(
        "/console/subscribers/bob/port25",
        &[("csrf", &d.csrf()), ("action", "block"), ("reason", "x")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(sam.get("/console/operators").status, 403);
    assert_eq!(sam.get("/console/abuse").status, 403);
    let mut abe = p.operator("abe");
    assert_eq!(abe.get("/console/operators").status, 403);
    assert_eq!(abe.get("/console/abuse").status, 200);
    // The console's forms all need the CSRF token, whatever the role.
    assert_eq!(
        abe.post_form(
            "/console/subscribers/bob/port25",
            &[("action", "block"), ("reason", "x")]
        )
        .status,
        403
    );
    // Console cookie is scoped to /console and flagged.
    let mut c = p.client();
    let r = c.login("/console/login", &[("name", "abe"), ("password", PASSWORD)]);
    let cookie = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("pc_operator="))
        .unwrap();
    assert!(
        cookie.contains("Path=/console")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
    );

    let t_sam = p.token("sam").await;
    let t_abe = p.token("abe").await;
    let t_ada = p.token("ada").await;
    let mut api = p.client();
    assert_eq!(
        api.api("GET", "/api/v1/subscribers", None, None).status,
        401
    );
    assert_eq!(
        api.api("GET", "/api/v1/subscribers", Some("pct_wrong"), None)
            .status,
        401
    );
    assert_eq!(
        api.api("GET", "/api/v1/subscribers", Some(&t_sam), None)
            .status,
        200
    );
    let r = api.api(
        "POST",
        "/api/v1/subscribers/bob/block",
        Some(&t_sam),
        Some(json!({"reason": "x"})),
    );
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("abuse role"));
    assert_eq!(
        api.api("GET", "/api/v1/operators", Some(&t_abe), None)
            .status,
        403
    );
    assert_eq!(
        api.api("GET", "/api/v1/operators", Some(&t_ada), None)
            .status,
        200
    );
    let r = api.api(
        "POST",
        "/api/v1/subscribers/bob/block",
        Some(&t_abe),
        Some(json!({"reason": "listed on a DNSBL"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["to"], "reinstated");
    // The API ignores session cookies: an operator's browser session is not a token.
    let mut ada = p.operator("ada");
    assert_eq!(ada.get("/api/v1/operators").status, 401);
    // A removed operator's token and session stop working.
    assert!(p.store.remove_operator("abe").await.unwrap());
    assert_eq!(
        api.api("GET", "/api/v1/optouts", Some(&t_abe), None).status,
        401
    );
    assert_eq!(abe.get("/console/").status, 303);
}

async fn api_covers_the_desk(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let t = p.token("ada").await;
    let mut api = p.client();
    let mut alice = p.customer("alice");
    // Opt-out via the portal, decided via the API.
    let c = alice.get("/optout").csrf();
    alice.post_form(
        "/optout",
        &[("csrf", &c), ("accept_aup", "yes"), ("reason", "own MX")],
    );
    let q = api.api("GET", "/api/v1/optouts", Some(&t), None).json();
    assert_eq!(q[0]["login"], "alice");
    let r = api.api("POST", "/api/v1/optouts/alice/approve", Some(&t), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["port25_open"], true);
    let r = api.api("POST", "/api/v1/optouts/alice/approve", Some(&t), None);
    assert_eq!(r.status, 409, "nothing pending any more");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("no pending opt-out"));
    // Bad JSON is a clear 400.
    let r = api.request(
        "POST",
        "/api/v1/subscribers/alice/block",
        &[("Authorization", &format!("Bearer {t}"))],
        b"{nope",
    );
    assert_eq!(r.status, 400);
    // Subscriber detail, search, whois, audit.
    let d = api
        .api("GET", "/api/v1/subscribers/alice", Some(&t), None)
        .json();
    assert_eq!(d["subscriber"]["port25"], "opted-out");
    assert!(
        d["subscriber"].get("password_hash").is_none(),
        "never exposes the hash"
    );
    assert_eq!(d["leases"][0]["net"], "100.64.1.2");
    assert_eq!(
        api.api("GET", "/api/v1/subscribers/nobody", Some(&t), None)
            .status,
        404
    );
    assert_eq!(
        api.api("GET", "/api/v1/subscribers?q=car", Some(&t), None)
            .json()[0]["login"],
        "carol"
    );
    let w = api
        .api("GET", "/api/v1/whois?ip=100.64.1.2", Some(&t), None)
        .json();
    assert_eq!(w["login"], "alice");
    assert_eq!(
        api.api(
            "GET",
            "/api/v1/whois?ip=100.64.1.2&at=2001-01-01T00:00:00Z",
            Some(&t),
            None
        )
        .status,
        404
    );
    assert_eq!(
        api.api("GET", "/api/v1/whois?ip=bad", Some(&t), None)
            .status,
        400
    );
    let a = api
        .api("GET", "/api/v1/audit?login=alice", Some(&t), None)
        .json();
    assert!(a
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "optout-approve"));
    // Static-address request: the customer asks, the desk approves, a free address
    // from the pool is assigned (198.51.100.1 is carol's).
    let c = alice.get("/static-address").csrf();
    assert!(alice
        .get("/static-address")
        .body
        .contains("7.50 EUR per month"));
    assert_eq!(
        alice
            .post_form(
                "/static-address",
                &[("csrf", &c), ("note", "for my server")]
            )
            .status,
        303
    );
    assert_eq!(
        alice.post_form("/static-address", &[("csrf", &c)]).status,
        409,
        "one pending at a time"
    );
    let s = api
        .api("GET", "/api/v1/static-requests", Some(&t), None)
        .json();
    let id = s[0]["id"].as_i64().unwrap();
    let r = api.api(
        "POST",
        &format!("/api/v1/static-requests/{id}/approve"),
        Some(&t),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["assigned"]
            .as_str()
            .unwrap()
            .starts_with("198.51.100.2"),
        "{}",
        r.body
    );
    let sub = p.store.subscriber("alice").await.unwrap();
    assert_eq!(sub.plan.as_str(), "static");
    assert_eq!(sub.port25.as_str(), "exempt");
    assert!(alice.get("/static-address").body.contains("198.51.100.2"));
    assert_eq!(
        api.api(
            "POST",
            &format!("/api/v1/static-requests/{id}/deny"),
            Some(&t),
            Some(json!({"reason": "x"}))
        )
        .status,
        400
    );
    assert_eq!(
        api.api("POST", "/api/v1/static-requests/x/approve", Some(&t), None)
            .status,
        404
    );
    // Support requests.
    let mut bob = p.customer("bob");
    let c = bob.get("/support").csrf();
    bob.post_form(
        "/support",
        &[("csrf", &c), ("subject", "help"), ("body", "please")],
    );
    let s = api
        .api("GET", "/api/v1/support-requests", Some(&t), None)
        .json();
    let id = s[0]["id"].as_i64().unwrap();
    assert_eq!(
        api.api(
            "POST",
            &format!("/api/v1/support-requests/{id}/close"),
            Some(&t),
            None
        )
        .status,
        200
    );
    assert_eq!(
        api.api(
            "POST",
            &format!("/api/v1/support-requests/{id}/close"),
            Some(&t),
            None
        )
        .status,
        409
    );
    // Dashboard, queue, operators.
    let d = api.api("GET", "/api/v1/dashboard", Some(&t), None).json();
    assert_eq!(d["days"].as_array().unwrap().len(), 14);
    assert!(d["states_now"].as_array().unwrap().len() == 5);
    assert_eq!(
        api.api("GET", "/api/v1/queue", Some(&t), None).json()["messages"],
        0
    );
    assert_eq!(
        api.api("GET", "/api/v1/queue/NOPE", Some(&t), None).status,
        404
    );
    let ops = api.api("GET", "/api/v1/operators", Some(&t), None).json();
    assert_eq!(ops.as_array().unwrap().len(), 3);
    // ARF: content type checked, then the report is attributed and opens a case.
    p.store
        .open_lease(&store::NewLease {
            login: "bob".into(),
            net: "100.64.7.7/32".parse().unwrap(),
            start: policy::Timestamp::parse_rfc3339("2026-11-26T00:00:00Z").unwrap(),
            end: None,
            source: policy::LeaseSource::Radius,
            session_id: None,
            nas: None,
        })
        .await
        .unwrap();
    let auth = format!("Bearer {t}");
    let r = api.request(
        "POST",
        "/api/v1/abuse/arf",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 400);
    let r = api.request(
        "POST",
        "/api/v1/abuse/arf",
        &[("Authorization", &auth), ("Content-Type", "message/rfc822")],
        ARF.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let outcome = r.json();
    assert_eq!(outcome["login"], "bob", "{outcome}");
    let cases = api
        .api("GET", "/api/v1/abuse/cases?login=bob", Some(&t), None)
        .json();
    let case = cases[0]["id"].as_i64().expect("a case for bob");
    let c = api
        .api(
            "GET",
            &format!("/api/v1/abuse/cases/{case}"),
            Some(&t),
            None,
        )
        .json();
    assert_eq!(c["case"]["login"], "bob");
    assert_eq!(c["evidence"][0]["kind"], "complaint");
    let mut ada = p.operator("ada");
    let page = ada.get(&format!("/console/abuse/{case}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("100.64.7.7"));
    assert!(ada.get("/console/abuse").body.contains(&format!("#{case}")));
    assert!(ada
        .get("/console/subscribers/bob")
        .body
        .contains(&format!("/console/abuse/{case}")));
    assert_eq!(ada.get("/console/abuse/999999").status, 404);
    assert_eq!(
        api.api(
            "POST",
            &format!("/api/v1/abuse/cases/{case}/close"),
            Some(&t),
            None
        )
        .status,
        400,
        "needs a reason"
    );
    let r = api.api(
        "POST",
        &format!("/api/v1/abuse/cases/{case}/close"),
        Some(&t),
        Some(json!({"reason": "customer cleaned up"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.request(
        "POST",
        "/api/v1/abuse/arf",
        &[("Authorization", &auth), ("Content-Type", "message/rfc822")],
        b"not a report at all",
    );
    assert!(r.status == 422 || r.status == 200, "{}", r.body);
    // The mail queue: list, retry (support), delete (abuse and up).
    p.store
        .enqueue(&store::NewQueuedMessage {
            id: "0000AAAA0000000001".into(),
            login: "alice".into(),
            mail_from: "alice@home.example".into(),
            recipients: vec![store::NewQueuedRecipient {
                address: "friend@far.example".into(),
                ..Default::default()
            }],
            body: std::sync::Arc::new(b"Subject: hi\r\n\r\nhello\r\n".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap();
    let qid = "0000AAAA0000000001";
    let q = api.api("GET", "/api/v1/queue", Some(&t), None).json();
    assert_eq!(q["messages"], 1);
    assert_eq!(
        api.api("GET", &format!("/api/v1/queue/{qid}"), Some(&t), None)
            .json()["login"],
        "alice"
    );
    let mut sam = p.operator("sam");
    let page = sam.get("/console/queue");
    assert!(page.body.contains(qid) && page.body.contains("friend@far.example"));
    assert!(
        !page.body.contains("/delete"),
        "support sees no delete button"
    );
    let r = sam.post_form(
        &format!("/console/queue/{qid}/retry"),
        &[("csrf", &page.csrf())],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        sam.post_form(
            &format!("/console/queue/{qid}/delete"),
            &[("csrf", &page.csrf())]
        )
        .status,
        403
    );
    assert_eq!(
        sam.post_form(&format!("/console/queue/{qid}/retry"), &[])
            .status,
        403,
        "CSRF"
    );
    let t_sam = p.token("sam").await;
    assert_eq!(
        api.api(
            "POST",
            &format!("/api/v1/queue/{qid}/retry"),
            Some(&t_sam),
            None
        )
        .status,
        200
    );
    assert_eq!(
        api.api(
            "DELETE",
            &format!("/api/v1/queue/{qid}"),
            Some(&t_sam),
            None
        )
        .status,
        403
    );
    assert_eq!(
        api.api("POST", "/api/v1/queue/flush", Some(&t), None)
            .status,
        200
    );
    assert_eq!(
        api.api("DELETE", &format!("/api/v1/queue/{qid}"), Some(&t), None)
            .status,
        200
    );
    assert_eq!(
        api.api("DELETE", &format!("/api/v1/queue/{qid}"), Some(&t), None)
            .status,
        404
    );
    assert_eq!(
        api.api("POST", "/api/v1/queue/NOPE/retry", Some(&t), None)
            .status,
        404
    );
    // Unknown API paths answer JSON.
    let r = api.api("GET", "/api/v1/nothing", Some(&t), None);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("openapi.json"));
}

/// Routes of the API router, read from its source: (method, path).
fn source_routes() -> Vec<(String, String)> {
    let src = include_str!("../src/api.rs");
    let start = src
        .find("pub(crate) fn router()")
        .expect("router() in api.rs");
    let body = &src[start..start + src[start..].find("\n}\n").expect("end of router()")];
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    for route in flat.split(".route(").skip(1) {
        let path = route
            .trim_start()
            .trim_start_matches('"')
            .split('"')
            .next()
            .unwrap()
            .to_string();
        if path.contains("{*rest}") {
            continue;
        }
        let handlers = route.split_once(',').map(|x| x.1).unwrap_or("");
        for m in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!(" {m}(")) || handlers.contains(&format!(".{m}(")) {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out
}

async fn openapi_document_matches_the_routes(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut c = p.client();
    let r = c.get("/api/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string());
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())),
                        "{path} declares {p}"
                    );
                }
            }
            documented.push((method.clone(), path.clone()));
        }
    }
    let mut routes = source_routes();
    routes.sort();
    documented.sort();
    assert!(!routes.is_empty());
    assert_eq!(
        routes, documented,
        "every API route documented, every documented path routed"
    );
    // And each documented operation is really served (not the JSON 404 fallback, not 405).
    let t = p.token("ada").await;
    for (method, path) in &documented {
        let concrete = path.replace("{login}", "alice").replace("{id}", "1");
        let r = c.api(&method.to_uppercase(), &concrete, Some(&t), None);
        assert_ne!(r.status, 405, "{method} {path}");
        assert!(
            !r.body.contains("no such API route"),
            "{method} {path} is routed"
        );
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/").skip(1) {
        let ptr = format!("/{}", part.split('"').next().unwrap());
        assert!(doc.pointer(&ptr).is_some(), "$ref {ptr} resolves");
    }
}

async fn mail_client_setup_documents(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut c = p.client();
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ann%40home.example",
        "/mail/config-v1.1.xml?emailaddress=ann%40home.example",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/xml"));
        assert!(r.body.contains("<hostname>smtp.isp.example</hostname>"));
        assert!(r.body.contains("<port>2465</port>") && r.body.contains("<port>2587</port>"));
        assert!(r.body.contains("<socketType>STARTTLS</socketType>"));
        assert!(r.body.contains("<domain>home.example</domain>"));
    }
    let r = c.get("/mail/config-v1.1.xml?emailaddress=%3Cx%3E%40%3Cscript%3E");
    assert!(!r.body.contains("<script>"), "escaped");
    let req = r#"<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>ann@home.example</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let r = c.request(
        "POST",
        "/autodiscover/autodiscover.xml",
        &[("Content-Type", "text/xml")],
        req.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<Type>SMTP</Type>")
            && r.body.contains("<Server>smtp.isp.example</Server>")
            && r.body.contains("<Port>2465</Port>")
    );
    assert!(r.body.contains("ann@home.example"));
    // The Apple profile is personal: login needed.
    assert_eq!(c.get("/sending/portcullis.mobileconfig").status, 303);
    let mut alice = p.customer("alice");
    let r = alice.get("/sending/portcullis.mobileconfig");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/x-apple-aspen-config")
    );
    assert!(r
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(
        r.body.contains("<string>alice</string>") && r.body.contains("<integer>2465</integer>")
    );
    assert!(!r.body.contains(PASSWORD));
    let s = alice.get("/sending");
    assert!(
        s.body.contains("smtp.isp.example") && s.body.contains("2587") && s.body.contains("2465")
    );
}

async fn password_change_checks_the_old_one(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut bob = p.customer("bob");
    p.store
        .set_suspended(
            "bob",
            true,
            &policy::Actor::System("abuse".into()),
            "credentials stolen",
        )
        .await
        .unwrap();
    assert!(bob
        .get("/")
        .body
        .contains("Sending through our mail server is suspended"));
    let c = bob.get("/password").csrf();
    let new = "a much better password";
    assert_eq!(
        bob.post_form(
            "/password",
            &[("current", PASSWORD), ("new", new), ("confirm", new)]
        )
        .status,
        403
    );
    assert_eq!(
        bob.post_form(
            "/password",
            &[
                ("csrf", &c),
                ("current", PASSWORD),
                ("new", "short"),
                ("confirm", "short")
            ]
        )
        .status,
        400
    );
    assert_eq!(
        bob.post_form(
            "/password",
            &[
                ("csrf", &c),
                ("current", PASSWORD),
                ("new", new),
                ("confirm", "different one!")
            ]
        )
        .status,
        400
    );
    assert_eq!(
        bob.post_form(
            "/password",
            &[
                ("csrf", &c),
                ("current", "wrong!"),
                ("new", new),
                ("confirm", new)
            ]
        )
        .status,
        401
    );
    let r = bob.post_form(
        "/password",
        &[
            ("csrf", &c),
            ("current", PASSWORD),
            ("new", new),
            ("confirm", new),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .body
        .contains("Password changed. The sending suspension is lifted."));
    assert!(!p.store.subscriber("bob").await.unwrap().suspended);
    let mut again = p.client();
    assert_eq!(
        again
            .login("/login", &[("login", "bob"), ("password", new)])
            .status,
        303
    );
    assert_eq!(
        again
            .login("/login", &[("login", "bob"), ("password", PASSWORD)])
            .status,
        401
    );
}

async fn metrics_and_health(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let mut c = p.client();
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(r.body.contains("# TYPE portcullis_subscribers gauge"));
    assert!(r
        .body
        .contains("portcullis_subscribers{state=\"blocked\"} 2"));
    assert!(r
        .body
        .contains("portcullis_subscribers{state=\"exempt\"} 1"));
    assert!(r.body.contains("portcullis_queue_messages 0"));
    assert!(
        r.body.contains("portcullis_test_extra 42"),
        "other components' lines"
    );
    assert_eq!(c.get("/healthz").status, 200);
}

async fn operator_store_methods_for_the_cli(b: Backend) {
    let p = start_on(b, |_| {}).await;
    let hash = store::password::hash_password("x");
    let e = p
        .store
        .add_operator("ada", store::OperatorRole::Admin, &hash)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"));
    let e = p
        .store
        .add_operator("bad name", store::OperatorRole::Admin, &hash)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid"));
    let e = p
        .store
        .add_operator("x", store::OperatorRole::Admin, "plain")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PHC"));
    assert!("root"
        .parse::<store::OperatorRole>()
        .unwrap_err()
        .to_string()
        .contains("support, abuse or admin"));
    let e = portal::create_api_token(&p.store, "ghost")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no operator named 'ghost'"));
    let t = portal::create_api_token(&p.store, "sam").await.unwrap();
    assert!(t.starts_with("pct_") && t.len() == 68);
    assert_eq!(
        p.store
            .operator_by_token_hash(&portal::hash_token(&t))
            .await
            .unwrap()
            .unwrap()
            .name,
        "sam"
    );
    assert_eq!(p.store.list_operators().await.unwrap().len(), 3);
    assert!(!p.store.remove_operator("ghost").await.unwrap());
    // The CLI helpers: role and password checked, hashing done for the caller.
    let e = portal::operators::add_operator(&p.store, "eve", "root", "long enough password")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("support, abuse or admin"), "{e}");
    let e = portal::operators::add_operator(&p.store, "eve", "abuse", "short")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 12 characters"), "{e}");
    let op = portal::operators::add_operator(&p.store, "eve", "abuse", "long enough password\n")
        .await
        .unwrap();
    assert_eq!(op.role, store::OperatorRole::Abuse);
    let mut c = p.client();
    assert_eq!(
        c.login(
            "/console/login",
            &[("name", "eve"), ("password", "long enough password")]
        )
        .status,
        303
    );
    assert_eq!(
        portal::operators::list_operators(&p.store)
            .await
            .unwrap()
            .len(),
        4
    );
    portal::operators::remove_operator(&p.store, "eve")
        .await
        .unwrap();
    let e = portal::operators::remove_operator(&p.store, "eve")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "operator 'eve' not found");
}

const ARF: &str = "From: <staff@hotmail.example>\r
Date: Thu, 26 Nov 2026 10:05:00 +0000\r
Subject: FW: Earn money\r
To: <abuse@isp.example>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report;\r
\tboundary=\"b1\"\r
\r
--b1\r
Content-Type: text/plain; charset=\"US-ASCII\"\r
\r
This is an email abuse report for a message received from IP 100.64.7.7.\r
\r
--b1\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: SomeGenerator/1.0\r
Version: 1\r
Original-Mail-From: <somespammer@example.net>\r
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000\r
Source-IP: 100.64.7.7\r
Reported-Domain: example.net\r
\r
--b1\r
Content-Type: message/rfc822\r
Content-Disposition: inline\r
\r
Received: from pc ([100.64.7.7]) by mx.example.com; Thu, 26 Nov 2026 09:59:59 +0000\r
From: <somespammer@example.net>\r
Message-ID: <portal-test-1@example.net>\r
Subject: Earn money\r
\r
Spam spam spam.\r
\r
--b1--\r
";

both_backends!(security_headers_on_every_kind_of_response);
both_backends!(customer_login_needs_csrf_sets_strict_cookie_and_logout_ends_it);
both_backends!(failed_logins_are_throttled);
both_backends!(every_customer_and_console_page_renders);
both_backends!(optout_request_then_operator_approval_opens_port_25);
both_backends!(static_subscribers_are_not_offered_an_optout);
both_backends!(a_customer_sees_only_their_own_data);
both_backends!(roles_are_enforced_in_console_and_api);
both_backends!(api_covers_the_desk);
both_backends!(openapi_document_matches_the_routes);
both_backends!(mail_client_setup_documents);
both_backends!(password_change_checks_the_old_one);
both_backends!(metrics_and_health);
both_backends!(operator_store_methods_for_the_cli);
