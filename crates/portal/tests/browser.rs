//! Browser test: runs `tests/browser/flow.mjs` (playwright-core driving Debian's
//! headless Chromium) against a real portal. Screenshots are kept in
//! `target/tmp/portal-screenshots/` (Cargo's `CARGO_TARGET_TMPDIR`).
//!
//! Needs `apt-get install chromium chromium-driver nodejs npm` and
//! `npm ci --prefix crates/portal/tests/browser`. Skips, saying so, only when
//! Chromium is absent; installs playwright-core with `npm ci` when it is missing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_requests_optout_operator_approves_customer_sees_port_open() {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED: Chromium not found (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .expect("npm runs (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let p = common::start(|_| {}).await;
    let run = tokio::process::Command::new("node")
        .arg(dir.join("flow.mjs"))
        .current_dir(&dir)
        .env("PORTAL_URL", format!("http://127.0.0.1:{}", p.addr.port()))
        .env("SCREENSHOTS", &shots)
        .env("PASSWORD", common::PASSWORD)
        .env("CUSTOMER", "alice")
        .env("OPERATOR", "abe")
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("browser flow finishes within 3 minutes")
        .expect("node runs (apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser flow failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    let s = p.store.subscriber("alice").await.unwrap();
    assert_eq!(s.port25, policy::Port25State::OptedOut);
    let audit = p.store.audit(Some("alice"), 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "optout-approve" && a.actor.to_string() == "operator:abe"));
    assert!(shots.join("08-customer-home-open.png").exists());
}
