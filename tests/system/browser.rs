//! The seed's story through the page, in headless Chromium, against the local run: Alice
//! requests, Bob approves from the link in the captured mail, Alice sees the role active.
//! Screenshots of the role list and the approval view go to `target/browser/`.

use serde_json::Value;

use crate::support::json_answer;
use crate::webdriver::Driver;

fn screenshot_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser")
}

#[tokio::test]
async fn alice_requests_bob_approves_alice_sees_the_role_active() {
    let Some(driver) = Driver::start().await else { return };
    let local = local::start(local::Options::default()).await.expect("local run starts");
    let url = &local.url;
    let browser = driver.browser().await;

    // Alice signs in at the front door and opens her roles on project-1.
    browser.open(&format!("{url}/")).await;
    browser.click("#users a[href*='alice']").await;
    browser.wait_for_text("#user", "alice@example.com").await;
    browser.wait_for_text("#roles tbody", "roles/compute.admin").await;
    assert!(browser.text("#roles tbody").await.contains("peer approval"));
    browser.screenshot(&screenshot_dir().join("role-list.png")).await;

    // She selects the peer-approved role, picks Bob, gives a justification and sends it.
    browser.click("#roles tbody input[aria-label='roles/compute.admin']").await;
    browser.wait_for_text("#activate", "Request approval").await;
    browser.click("#activate").await;
    browser.click("#peers input[value='bob@example.com']").await;
    browser.type_into("#justification", "BUG-12345").await;
    browser.click("#submit").await;
    browser.wait_for_text("#result-title", "Request sent").await;
    browser.wait_for_text("#result-details", "waiting for approval").await;

    // Bob's mail arrives; the link is taken out of it.
    let link = loop_for_link(&local.emulator.url()).await;
    assert!(link.starts_with(&format!("{url}/?activation=")), "{link}");

    // Bob signs in and opens the link: he sees who asks for what, and approves.
    browser.open(&format!("{url}/_local/signout")).await;
    browser.click("#users a[href*='bob']").await;
    browser.open(&link).await;
    let view = browser.wait_for_text("#result-details", "roles/compute.admin").await;
    assert!(view.contains("alice@example.com") && view.contains("BUG-12345") && view.contains("project-1"), "{view}");
    browser.wait_for_text("#result-title", "alice@example.com asks for access").await;
    browser.wait_for_text("#result-details", "waiting for approval").await;
    browser.find("#approve").await;
    browser.find("#deny").await;
    browser.screenshot(&screenshot_dir().join("approval-view.png")).await;
    browser.click("#approve").await;
    browser.wait_for_text("#notice", "Your approval is recorded").await;
    browser.wait_for_text("#result-details", "active").await;
    browser.wait_for_text("#timeline", "activated").await;

    // The reviewer opens the approved request again: it says ACTIVE, and offers no approval.
    browser.open(&link).await;
    browser.wait_for_text("#result-details", "active").await;
    browser.wait_for_text("#timeline", "approved by bob@example.com").await;
    assert!(!browser.displayed("#approve").await, "no approve button on an active request");
    assert!(!browser.displayed("#deny").await, "no deny button either");
    browser.screenshot(&screenshot_dir().join("approved-request.png")).await;

    // Carol, not a reviewer, gets a clear message instead of an Approve button.
    browser.open(&format!("{url}/_local/signout")).await;
    browser.click("#users a[href*='carol']").await;
    browser.open(&link).await;
    browser.wait_for_text("#error", "neither the requester nor a reviewer").await;

    // Alice sees the role active, and her request in her list with its true state.
    browser.open(&format!("{url}/_local/signout")).await;
    browser.click("#users a[href*='alice']").await;
    browser.wait_for_text("#roles tbody", "active until").await;
    browser.wait_for_text("#mine-list tbody", "active").await;
    browser.screenshot(&screenshot_dir().join("role-active.png")).await;
    browser.close().await;
}

async fn loop_for_link(emulator: &str) -> String {
    for _ in 0..200 {
        let mail: Vec<Value> =
            reqwest::get(format!("{emulator}/_emulator/mail")).await.expect("answers").json().await.expect("json");
        if let Some(first) = mail.first() {
            let text = first["content"][0]["value"].as_str().unwrap_or_default();
            if let Some(link) = text.split_whitespace().find(|w| w.contains("?activation=")) {
                return link.to_string();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no mail with a link arrived");
}

#[tokio::test]
async fn the_local_run_keeps_policies_between_runs_with_a_state_directory() {
    let dir = std::env::temp_dir().join(format!("jit-local-state-{}", std::process::id()));
    let options = local::Options { state: Some(dir.clone()), ..local::Options::default() };
    let first = local::start(options.clone()).await.expect("starts");
    let client = reqwest::Client::new();
    let body = serde_json::json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1"});
    let response = client
        .post(format!("{}/api/projects/project-1/roles/self-activate", first.url))
        .header("X-Local-User", "carol@example.com")
        .header("X-JITACCESS", "1")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    first.save(&dir).expect("saved");
    let second = local::start(options).await.expect("starts again");
    let roles: Value = json_answer(
        client
            .get(format!("{}/api/projects/project-1/roles", second.url))
            .header("X-Local-User", "carol@example.com")
            .header("X-JITACCESS", "1"),
    )
    .await;
    assert_eq!(roles["entitlements"][0]["status"], "ACTIVE", "{roles}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_front_door_signs_people_in_and_strips_forged_identity() {
    let local = local::start(local::Options::default()).await.expect("starts");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let page = client.get(format!("{}/", local.url)).send().await.expect("answers");
    assert_eq!(page.status(), 303, "a signed-out browser is sent to sign in");
    let api = client.get(format!("{}/api/policy", local.url)).header("X-JITACCESS", "1").send().await.expect("answers");
    assert_eq!(api.status(), 401);
    // A forged assertion is dropped and replaced by the front door's own, for the signed-in user.
    let policy: Value = json_answer(
        client
            .get(format!("{}/api/policy", local.url))
            .header("X-JITACCESS", "1")
            .header("X-Local-User", "bob@example.com")
            .header("x-goog-iap-jwt-assertion", "forged"),
    )
    .await;
    assert_eq!(policy["signedInUser"]["email"], "bob@example.com");
    let stranger = client
        .get(format!("{}/api/policy", local.url))
        .header("X-JITACCESS", "1")
        .header("X-Local-User", "eve@evil.example")
        .send()
        .await
        .expect("answers");
    assert_eq!(stranger.status(), 401, "only the organization's users can sign in");
    let page =
        client.get(format!("{}/", local.url)).header("X-Local-User", "bob@example.com").send().await.expect("answers");
    let csp = page.headers()["content-security-policy"].to_str().expect("text").to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
}

/// A newcomer approves in the emulated Google Chat: Bob's card on the emulator's Chat page,
/// Approve clicked in the browser, the card and the policy then say the role is active.
#[tokio::test]
async fn bob_approves_from_the_emulated_chat_page() {
    let Some(driver) = Driver::start().await else { return };
    let local = local::start(local::Options::default()).await.expect("local run starts");
    let http = reqwest::Client::new();
    let body = serde_json::json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-12345",
        "peers": ["bob@example.com"], "activationTimeout": 30});
    let response = http
        .post(format!("{}/api/projects/project-1/roles/request", local.url))
        .header("x-local-user", "alice@example.com")
        .header("x-jitaccess", "1")
        .json(&body)
        .send()
        .await
        .expect("the front door answers");
    assert_eq!(response.status(), 200);

    let browser = driver.browser().await;
    browser.open(&format!("{}/_emulator/chat/page", local.emulator.url())).await;
    browser.wait_for_text("#messages", "Approval requested").await;
    let card = browser.wait_for_text("#messages", "BUG-12345").await;
    assert!(card.contains("bob@example.com") && card.contains("roles/compute.admin"), "{card}");
    browser.screenshot(&screenshot_dir().join("chat-card.png")).await;
    browser.click("button[data-reader='bob@example.com'][data-function='approve']").await;
    browser.wait_for_text("#status", "Done.").await;
    browser.wait_for_text("#messages", "ACTIVE").await;
    assert!(!browser.displayed("button[data-function='approve']").await, "no Approve left on an active request");
    browser.close().await;
}

/// Emergency access through the page: Dave (on call) takes roles/logging.admin at once after
/// its warning, Erin finds it waiting for her review and ratifies it.
#[tokio::test]
async fn dave_breaks_glass_in_the_page_and_erin_ratifies_it() {
    let Some(driver) = Driver::start().await else { return };
    let local = local::start(local::Options::default()).await.expect("local run starts");
    let url = &local.url;
    let browser = driver.browser().await;
    browser.open(&format!("{url}/")).await;
    browser.click("#users a[href*='dave']").await;
    browser.wait_for_text("#roles tbody", "emergency access").await;
    browser.click("#roles tbody input[aria-label='roles/logging.admin']").await;
    browser.click("#break-glass").await;
    browser.wait_for_text("#request-title", "Emergency access").await;
    let warning = browser.wait_for_text("#break-glass-warning", "granted at once, without approval").await;
    assert!(warning.contains("a single rejection revokes it"), "{warning}");
    browser.type_into("#justification", "INC-4711 logging outage").await;
    // Not without saying so: the confirmation is required.
    browser.click("#submit").await;
    assert!(browser.displayed("#request-view").await, "the form stays until the warning is accepted");
    browser.click("#break-glass-confirm").await;
    browser.click("#submit").await;
    browser.wait_for_text("#result-title", "Emergency access granted").await;
    browser.wait_for_text("#notice", "they must ratify it").await;
    browser.screenshot(&screenshot_dir().join("break-glass.png")).await;

    browser.open(&format!("{url}/_local/signout")).await;
    browser.click("#users a[href*='erin']").await;
    browser.wait_for_text("#review-list tbody", "emergency: 0 of 1 ratified").await;
    browser.click("#review-list tbody a").await;
    browser.wait_for_text("#result-title", "Emergency access by dave@example.com").await;
    browser.wait_for_text("#result-details", "awaiting review").await;
    assert!(!browser.displayed("#approve").await, "emergency access is ratified, not approved");
    browser.click("#ratify").await;
    browser.wait_for_text("#notice", "the emergency access is ratified").await;
    browser.wait_for_text("#result-details", "ratified").await;
    browser.close().await;
}
