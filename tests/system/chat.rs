//! Approving from Google Chat, through the local run: cards posted to each reviewer by the
//! `chat` function from the events topic, clicks delivered by the emulated Google Chat with
//! its signed token, the same decision code as the web page, and every card kept current.
//! Then every way to fake Chat's call, refused.

use serde_json::{Value, json};

use crate::support::{ALICE, BOB, CAROL, json_answer};

pub(crate) struct Local {
    pub(crate) running: local::Running,
    pub(crate) http: reqwest::Client,
}

impl Local {
    pub(crate) async fn start(settings: Vec<(&'static str, String)>) -> Local {
        let running = local::start(local::Options { settings, ..local::Options::default() }).await.expect("local run");
        Local { running, http: reqwest::Client::new() }
    }

    pub(crate) fn emulator(&self, path: &str) -> String {
        format!("{}{path}", self.running.emulator.url())
    }

    pub(crate) async fn post(&self, user: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.running.url))
            .header("x-local-user", user)
            .header("x-jitaccess", "1")
            .json(&body)
            .send()
            .await
            .expect("the front door answers");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, user: &str, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.running.url))
            .header("x-local-user", user)
            .header("x-jitaccess", "1")
            .send()
            .await
            .expect("the front door answers");
        response.json().await.expect("json")
    }

    /// Carol becomes a peer of Alice and Bob for compute.admin on project-1.
    pub(crate) async fn carol_is_a_peer(&self) {
        self.eligible("roles/compute.admin", CAROL).await;
    }

    /// `who` becomes eligible for `role` on project-1 with peer approval.
    pub(crate) async fn eligible(&self, role: &str, who: &str) {
        let url = self.emulator("/v3/projects/project-1:getIamPolicy");
        let mut policy: Value = self
            .http
            .post(&url)
            .json(&json!({"options": {"requestedPolicyVersion": 3}}))
            .send()
            .await
            .expect("a")
            .json()
            .await
            .expect("j");
        policy["bindings"].as_array_mut().expect("bindings").push(json!({
            "role": role, "members": [format!("user:{who}")],
            "condition": {"title": "Eligible", "expression": "has({}.multiPartyApprovalConstraint)"}}));
        let url = self.emulator("/v3/projects/project-1:setIamPolicy");
        let response = self.http.post(&url).json(&json!({"policy": policy})).send().await.expect("answers");
        assert!(response.status().is_success());
    }

    /// The mail captured so far (SendGrid's JSON).
    pub(crate) async fn mail(&self) -> Vec<Value> {
        self.http.get(self.emulator("/_emulator/mail")).send().await.expect("a").json().await.expect("json")
    }

    /// Waits until a mail to `to` passes `test`; that mail.
    pub(crate) async fn mail_until(&self, to: &str, test: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let found = self.mail().await.into_iter().find(|m| {
                m["personalizations"][0]["to"].as_array().is_some_and(|t| t.iter().any(|a| a["email"] == to)) && test(m)
            });
            if let Some(mail) = found {
                return mail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no such mail to {to}: {:#}", json!(self.mail().await));
    }

    /// The events published so far, oldest first.
    pub(crate) async fn events(&self) -> Vec<Value> {
        use base64::Engine as _;
        let messages: Vec<Value> = json_answer(self.http.get(self.emulator("/_emulator/pubsub"))).await;
        messages
            .iter()
            .filter_map(|m| base64::engine::general_purpose::STANDARD.decode(m["data"].as_str()?).ok())
            .filter_map(|data| serde_json::from_slice(&data).ok())
            .collect()
    }

    /// Bindings of ours for `member` on `role` in project-1.
    pub(crate) async fn bindings_of(&self, member: &str, role: &str) -> usize {
        self.activations_of(member, Some(role)).await
    }

    /// Bindings of ours for `member` in project-1, on `role` or (`None`) any role.
    async fn activations_of(&self, member: &str, role: Option<&str>) -> usize {
        let url = self.emulator("/v3/projects/project-1:getIamPolicy");
        let policy: Value =
            json_answer(self.http.post(&url).json(&json!({"options": {"requestedPolicyVersion": 3}}))).await;
        policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| {
                role.is_none_or(|role| b["role"] == role)
                    && b["members"] == json!([format!("user:{member}")])
                    && b["condition"]["title"] == "JIT access activation"
            })
            .count()
    }

    pub(crate) async fn ask(&self, reviewers: &[&str]) -> String {
        let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": reviewers, "activationTimeout": 30});
        let (status, reply) = self.post(ALICE, "/api/projects/project-1/roles/request", body).await;
        assert_eq!(status, 200, "{reply}");
        reply["entitlements"][0]["activationId"].as_str().expect("id").to_string()
    }

    pub(crate) async fn cards(&self) -> Vec<Value> {
        json_answer(self.http.get(self.emulator("/_emulator/chat"))).await
    }

    /// Waits (pushes are asynchronous) until every reviewer's card passes `test`.
    pub(crate) async fn cards_until(&self, readers: &[&str], test: impl Fn(&str) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let cards = self.cards().await;
            let done = readers
                .iter()
                .all(|reader| cards.iter().any(|c| c["readers"] == json!([reader]) && test(&c["cardsV2"].to_string())));
            if done {
                return cards;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("cards never got there: {:#}", json!(self.cards().await));
    }

    /// What `user` does in Chat, through the emulated Google Chat: `{status, reply}`.
    pub(crate) async fn in_chat(&self, event: Value) -> Value {
        let response = self.http.post(self.emulator("/_emulator/chat/events")).json(&event).send().await.expect("a");
        assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
        response.json().await.expect("json")
    }

    pub(crate) fn card_of<'a>(cards: &'a [Value], reader: &str) -> &'a Value {
        cards.iter().find(|c| c["readers"] == json!([reader])).expect("a card")
    }

    pub(crate) async fn activation_bindings(&self) -> usize {
        self.activations_of(ALICE, None).await
    }

    pub(crate) fn chat_url(&self) -> String {
        let chat = emulator::state::lock(&self.running.emulator.state.chat);
        chat.app.as_ref().expect("the Chat app is configured").url.clone()
    }

    /// The next matching calls to the emulator fail or slow down (`/_emulator/faults`).
    pub(crate) async fn fault(&self, fault: Value) {
        let response = self.http.post(self.emulator("/_emulator/faults")).json(&fault).send().await.expect("answers");
        assert!(response.status().is_success(), "{fault}");
    }

    pub(crate) async fn calls(&self, call: &str) -> u64 {
        let calls: Value =
            self.http.get(self.emulator("/_emulator/calls")).send().await.expect("a").json().await.expect("j");
        calls[call].as_u64().unwrap_or(0)
    }

    /// Delivers `event` to the Chat app's push endpoint as the push subscription does; the
    /// app's answer (204 acknowledges, 503 asks for a redelivery).
    pub(crate) async fn push(&self, event: Value) -> u16 {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        let push = json!({"message": {"data": data, "messageId": "test"}, "subscription": "s"});
        let token =
            self.running.emulator.state.oidc_token(local::PUSH_ACCOUNT, local::CHAT_PUSH_AUDIENCE).expect("token");
        let url = format!("{}events", self.chat_url());
        self.http.post(url).bearer_auth(token).json(&push).send().await.expect("answers").status().as_u16()
    }

    /// `person`'s direct message with the app, as Chat finds it.
    pub(crate) async fn direct_message(&self, person: &str) -> String {
        let url = format!("{}?name={}", self.emulator("/v1/spaces:findDirectMessage"), emulator::chat::user_of(person));
        let space: Value = json_answer(self.http.get(url)).await;
        space["name"].as_str().expect("a direct message").to_string()
    }

    /// How often the posted cards were updated, all together.
    pub(crate) async fn updates(&self) -> u64 {
        self.cards().await.iter().map(|c| c["updates"].as_u64().unwrap_or(0)).sum()
    }
}

pub(crate) fn state_is(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |card| card.contains(&format!("\"text\":\"{name}\""))
}

#[tokio::test]
async fn bob_approves_in_chat_carol_in_the_browser_and_every_card_shows_active() {
    let policy = r#"[{"roles": ["roles/compute.admin"], "approvals": 2}]"#.to_string();
    let local = Local::start(vec![("APPROVAL_POLICY", policy)]).await;
    local.carol_is_a_peer().await;
    let id = local.ask(&[BOB, CAROL]).await;

    // Both reviewers get the card in their direct message with the app: each create carries a
    // request ID of its own space, as the emulator, like Google perhaps, deduplicates request
    // IDs across spaces (issue 21).
    let cards = local.cards_until(&[BOB, CAROL], state_is("APPROVAL_AWAITED")).await;
    let bobs = Local::card_of(&cards, BOB);
    let text = bobs["cardsV2"].to_string();
    for shown in [ALICE, "roles/compute.admin", "project-1", "BUG-1", "0 of 2", "Approve", "Deny", "Open in browser"] {
        assert!(text.contains(shown), "{shown} missing from {text}");
    }
    let message = bobs["name"].as_str().expect("name").to_string();

    // Pub/Sub delivers at least once: the same event again posts no second card.
    let event = json!({"type": "RequestActivation", "attributes": {"activation_id": id}});
    let data = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(event.to_string())
    };
    let push = json!({"message": {"data": data, "messageId": "again"}, "subscription": "s"});
    let token = local.running.emulator.state.oidc_token(local::PUSH_ACCOUNT, local::CHAT_PUSH_AUDIENCE).expect("token");
    let url = format!("{}events", local.chat_url());
    let response = local.http.post(url).bearer_auth(token).json(&push).send().await.expect("answers");
    assert_eq!(response.status(), 204);
    assert_eq!(local.cards().await.len(), 2, "one card per reviewer, however often the event comes");

    // Bob approves in Chat: his card answers with the new state at once.
    let answer = local
        .in_chat(json!({"type": "CARD_CLICKED", "email": BOB, "message": message, "function": "approve", "id": id}))
        .await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["reply"]["actionResponse"]["type"], "UPDATE_MESSAGE", "{answer}");
    assert!(answer["reply"]["cardsV2"].to_string().contains("1 of 2"), "{answer}");
    assert_eq!(local.activation_bindings().await, 0, "one approval of two grants nothing");

    // A second click is refused by the ledger (one approval per reviewer), shown on the card.
    let again = local
        .in_chat(json!({"type": "CARD_CLICKED", "email": BOB, "message": message, "function": "approve", "id": id}))
        .await;
    assert!(again["reply"]["cardsV2"].to_string().contains("Not done"), "{again}");

    // Carol approves in the browser: the quorum is met, the binding written once.
    let (status, view) = local.post(CAROL, &format!("/api/requests/{id}/approve"), json!({})).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("ACTIVE")), "{view}");
    assert_eq!(local.activation_bindings().await, 1);

    // Both cards end up showing ACTIVE, with no buttons left to decide with.
    let cards = local.cards_until(&[BOB, CAROL], state_is("ACTIVE")).await;
    for reader in [BOB, CAROL] {
        let text = Local::card_of(&cards, reader)["cardsV2"].to_string();
        assert!(!text.contains("\"function\":\"approve\""), "{reader}: {text}");
    }
    assert_eq!(local.activation_bindings().await, 1, "written once");
}

#[tokio::test]
async fn deny_from_chat_asks_a_reason_and_ends_the_request() {
    let local = Local::start(Vec::new()).await;
    let id = local.ask(&[BOB]).await;
    let cards = local.cards_until(&[BOB], state_is("APPROVAL_AWAITED")).await;
    let message = Local::card_of(&cards, BOB)["name"].clone();
    let click = |dialog: &str, reason: Option<&str>| {
        json!({"type": "CARD_CLICKED", "email": BOB, "message": message, "function": "deny", "id": id,
            "dialog": dialog, "reason": reason})
    };

    let dialog = local.in_chat(click("REQUEST_DIALOG", None)).await;
    assert_eq!(dialog["reply"]["actionResponse"]["type"], "DIALOG", "{dialog}");
    assert!(dialog["reply"].to_string().contains("\"name\":\"reason\""), "a reason is asked: {dialog}");

    let blank = local.in_chat(click("SUBMIT_DIALOG", Some("  "))).await;
    let status = &blank["reply"]["actionResponse"]["dialogAction"]["actionStatus"];
    assert_ne!(status["statusCode"], "OK", "a deny needs a reason: {blank}");

    let denied = local.in_chat(click("SUBMIT_DIALOG", Some("Not during the freeze"))).await;
    assert_eq!(denied["reply"]["actionResponse"]["dialogAction"]["actionStatus"]["statusCode"], "OK", "{denied}");
    let view = local.get(ALICE, &format!("/api/requests/{id}")).await;
    assert_eq!(view["state"], "DENIED", "{view}");
    local.cards_until(&[BOB], state_is("DENIED")).await;
    assert_eq!(local.activation_bindings().await, 0);
}

/// Issue 21: the create of one reviewer's card fails for good (Chat refuses it); the other
/// reviewer's card is still posted, and the push is acknowledged, not retried forever.
#[tokio::test]
async fn one_reviewers_failure_never_stops_the_others_card() {
    let local = Local::start(Vec::new()).await;
    local.carol_is_a_peer().await;
    local.fault(json!({"api": "chat", "method": "createMessage", "status": 403, "count": 1})).await;
    local.ask(&[BOB, CAROL]).await;
    for _ in 0..200 {
        if local.cards().await.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let cards = local.cards().await;
    assert_eq!(cards.len(), 1, "the reviewer after the refused one still gets a card: {:#}", json!(cards));
}

/// Issue 21: updates go to every card whatever happens to one of them; the push asks for a
/// redelivery only when a failure could pass (503), not for a refusal (403).
#[tokio::test]
async fn updates_reach_every_card_and_only_passing_failures_ask_for_a_redelivery() {
    let local = Local::start(Vec::new()).await;
    local.carol_is_a_peer().await;
    let id = local.ask(&[BOB, CAROL]).await;
    local.cards_until(&[BOB, CAROL], state_is("APPROVAL_AWAITED")).await;
    let changed = json!({"type": "ApprovalRecorded", "attributes": {"activation_id": id}});
    let before = local.updates().await;

    local.fault(json!({"api": "chat", "method": "updateMessage", "status": 403, "count": 1})).await;
    assert_eq!(local.push(changed.clone()).await, 204, "a refusal: acknowledged, logged");
    assert_eq!(local.updates().await, before + 1, "the other card is updated all the same");

    local.fault(json!({"api": "chat", "method": "updateMessage", "status": 503, "count": 1})).await;
    assert_eq!(local.push(changed.clone()).await, 503, "Chat unavailable: Pub/Sub delivers again");
    assert_eq!(local.updates().await, before + 2, "the other card is updated all the same");
    assert_eq!(local.push(changed).await, 204, "the redelivery reaches both");
    assert_eq!(local.updates().await, before + 4);
}

/// Issue 21: once a request ID has expired (AIP-155 lets it), a redelivered event's create
/// finds the message ID taken, 409 `ALREADY_EXISTS`: the card is there, so it counts as
/// delivered and is brought up to date, and the next reviewer's card still goes out.
#[tokio::test]
async fn a_card_already_there_counts_as_delivered() {
    let local = Local::start(Vec::new()).await;
    local.carol_is_a_peer().await;
    // The app's first create waits; meanwhile both cards appear under other request IDs, as
    // an earlier delivery whose request IDs Chat no longer remembers would have left them.
    local.fault(json!({"api": "chat", "method": "createMessage", "latencyMs": 1500, "count": 1})).await;
    let id = local.ask(&[BOB, CAROL]).await;
    for _ in 0..200 {
        if local.calls("chat.createMessage").await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let message = common::chat::message_id(&id);
    for reviewer in [BOB, CAROL] {
        let space = local.direct_message(reviewer).await;
        let url = local.emulator(&format!("/v1/{space}/messages?messageId={message}&requestId=expired-{reviewer}"));
        let earlier = json!({"text": "an earlier delivery", "cardsV2": [{"cardId": "request", "card": {"header": {"title": "old"}}}]});
        let response = local.http.post(url).json(&earlier).send().await.expect("answers");
        assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    }
    let cards = local.cards_until(&[BOB, CAROL], state_is("APPROVAL_AWAITED")).await;
    assert_eq!(cards.len(), 2, "no second card for anyone: {:#}", json!(cards));
}

/// Issue 21: a click answers within `CHAT_CLICK_TIMEOUT` even when the decision takes longer
/// (here setIamPolicy answers after 3 s, the timeout is 1 s): the reply says the decision is
/// still being processed, and the decision still ends, updating the card.
#[tokio::test]
async fn a_slow_decision_answers_the_click_in_time_and_updates_the_card_later() {
    let local = Local::start(vec![("CHAT_CLICK_TIMEOUT", "1".to_string())]).await;
    let id = local.ask(&[BOB]).await;
    let cards = local.cards_until(&[BOB], state_is("APPROVAL_AWAITED")).await;
    let message = Local::card_of(&cards, BOB)["name"].clone();
    local.fault(json!({"api": "resourcemanager", "method": "setIamPolicy", "latencyMs": 3000, "count": 1})).await;
    let started = std::time::Instant::now();
    let answer = local
        .in_chat(json!({"type": "CARD_CLICKED", "email": BOB, "message": message, "function": "approve", "id": id}))
        .await;
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_millis(2900), "the click waited {waited:?}: {answer}");
    assert!(answer["reply"].to_string().contains("still being processed"), "{answer}");
    local.cards_until(&[BOB], state_is("ACTIVE")).await;
    assert_eq!(local.activation_bindings().await, 1, "the decision was carried out");
}

/// Issue 21: an event in the Workspace add-on shape (the app configured as an add-on) is
/// refused with what to change in the Chat API's configuration; it decides nothing.
#[tokio::test]
async fn an_add_on_event_is_refused_with_how_to_configure_the_app() {
    let local = Local::start(Vec::new()).await;
    let id = local.ask(&[BOB]).await;
    let state = local.running.emulator.state.clone();
    let add_on = json!({
        "commonEventObject": {"hostApp": "CHAT", "invokedFunction": "approve", "parameters": {"id": id}},
        "chat": {"user": {"name": "users/1", "email": BOB, "type": "HUMAN"}, "eventTime": "2026-01-01T00:00:00Z",
            "buttonClickedPayload": {"space": {"name": "spaces/x"}, "message": {"name": "spaces/x/messages/y"}}}});
    let send = |token: String| {
        let request = local.http.post(local.chat_url()).bearer_auth(token).json(&add_on);
        async move {
            let response = request.send().await.expect("answers");
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = send(state.chat_token(local::CHAT_AUDIENCE).expect("token")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("chat_event_add_on")), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("untick 'Build this Chat app as a Google Workspace add-on'"), "{message}");
    // An add-on's own token (its service agent's) is refused as any other stranger's.
    let agent = "service-123456789012@gcp-sa-gsuiteaddons.iam.gserviceaccount.com";
    let (status, body) = send(state.oidc_token(agent, &local.chat_url()).expect("token")).await;
    assert_eq!(status, 401, "{body}");
    let view = local.get(ALICE, &format!("/api/requests/{id}")).await;
    assert_eq!(view["state"], "APPROVAL_AWAITED", "nothing decided: {view}");
}

/// Sends Bob's Approve click straight to the Chat app with `tokens` (as `Authorization:
/// Bearer`), expects 401 and nothing decided; then the same click with Google Chat's own
/// token is taken, so the refusal was the token's.
async fn refused_and_nothing_changes(case: &str, tokens: impl Fn(&emulator::state::State) -> Vec<String>) {
    let local = Local::start(Vec::new()).await;
    let id = local.ask(&[BOB]).await;
    let state = local.running.emulator.state.clone();
    let url = local.chat_url();
    let event = json!({"type": "CARD_CLICKED", "user": {"name": "users/1", "email": BOB, "type": "HUMAN"},
        "common": {"invokedFunction": "approve", "parameters": {"id": id}}});
    let send = |tokens: Vec<String>| {
        let mut request = local.http.post(&url).json(&event);
        for token in tokens {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    assert_eq!(send(tokens(&state)).await, 401, "{case}");
    let view = local.get(ALICE, &format!("/api/requests/{id}")).await;
    let approvals = view["approvals"].as_array().map(Vec::len);
    assert_eq!((view["state"].as_str(), approvals), (Some("APPROVAL_AWAITED"), Some(0)), "{case}: {view}");
    assert_eq!(local.activation_bindings().await, 0, "{case}");
    assert_eq!(send(vec![state.chat_token(local::CHAT_AUDIENCE).expect("token")]).await, 200, "{case}: control");
    assert_eq!(local.get(ALICE, &format!("/api/requests/{id}")).await["state"], "ACTIVE", "{case}: control");
}

fn valid_parts(state: &emulator::state::State) -> (String, String) {
    let valid = state.chat_token(local::CHAT_AUDIENCE).expect("token");
    let mut parts = valid.split('.');
    (parts.next().expect("header").to_string(), parts.next().expect("payload").to_string())
}

#[tokio::test]
async fn a_chat_event_without_a_token_is_refused() {
    refused_and_nothing_changes("no token", |_| vec![]).await;
}

#[tokio::test]
async fn an_unsigned_chat_event_is_refused() {
    refused_and_nothing_changes("signature stripped", |state| {
        let (header, payload) = valid_parts(state);
        vec![format!("{header}.{payload}.")]
    })
    .await;
    refused_and_nothing_changes("alg none", |state| {
        let (_, payload) = valid_parts(state);
        vec![format!("{}.{payload}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#))]
    })
    .await;
}

#[tokio::test]
async fn a_forged_chat_event_is_refused() {
    refused_and_nothing_changes("another key under Chat's key ID", |_| {
        let forger = common::keys::LocalKey::generate_rs256("emulator-chat-key-1").expect("key");
        let now = common::timestamp::Timestamp::now().unix_seconds();
        let claims =
            json!({"iss": common::chat::CHAT_ACCOUNT, "aud": local::CHAT_AUDIENCE, "iat": now, "exp": now + 600});
        vec![forger.sign_json(&claims).expect("signed")]
    })
    .await;
    refused_and_nothing_changes("a Google ID token from someone else", |state| {
        vec![state.oidc_token("mallory@example.com", local::CHAT_AUDIENCE).expect("token")]
    })
    .await;
    refused_and_nothing_changes("two tokens", |state| {
        let valid = state.chat_token(local::CHAT_AUDIENCE).expect("token");
        vec![valid.clone(), valid]
    })
    .await;
}

#[tokio::test]
async fn a_chat_event_for_the_wrong_audience_is_refused() {
    refused_and_nothing_changes("an ID token for another app's URL", |state| {
        vec![state.chat_token("https://other.example.com/").expect("token")]
    })
    .await;
}

#[tokio::test]
async fn a_chat_event_replayed_from_another_apps_project_is_refused() {
    refused_and_nothing_changes("Chat's token for another project's app", |state| {
        vec![state.chat_token("999999999999").expect("token")]
    })
    .await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

const URL_AUDIENCE: &str = "https://jit-chat.example.com/";

/// The chat function configured with its URL as Chat's audience, served on 127.0.0.1.
async fn chat_with_url_audience() -> (crate::support::Backend, std::net::SocketAddr) {
    let backend = crate::support::backend().await;
    let url = URL_AUDIENCE;
    let mut pairs = backend.emulator.environment();
    pairs.extend([
        ("RESOURCE_SCOPE", crate::support::SCOPE.to_string()),
        ("BASE_URL", "https://jit.example.com".to_string()),
        ("CHAT_AUDIENCE", url.to_string()),
        ("PUSH_AUDIENCE", "https://jit-chat.example.com/events".to_string()),
        ("PUSH_SERVICE_ACCOUNT", local::PUSH_ACCOUNT.to_string()),
    ]);
    let mut env = common::config::Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = chat::Config::read(&mut env);
    env.finish().expect("valid");
    assert_eq!(config.audience, chat::ChatAudience::EndpointUrl(url.to_string()));
    let app = chat::router(chat::AppState::new(config).await.expect("starts"));
    let at = common::runner::spawn_local(common::runner::app(app)).await.expect("binds");
    (backend, at)
}

/// The other form Google documents: the Chat app configured with its URL as audience gets a
/// Google ID token issued to Chat's account. And the push endpoint takes only the push
/// subscription's token.
#[tokio::test]
async fn the_endpoint_url_audience_and_the_push_endpoint_take_only_their_own_tokens() {
    let (backend, at) = chat_with_url_audience().await;
    let url = URL_AUDIENCE;
    let state = backend.emulator.state.clone();
    let message = json!({"type": "MESSAGE", "user": {"name": "users/1", "email": BOB, "type": "HUMAN"}});
    let send = |path: &'static str, token: String, body: Value| {
        let request = backend.http.post(format!("http://{at}{path}")).bearer_auth(token).json(&body);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let chat_account = common::chat::CHAT_ACCOUNT;
    assert_eq!(send("/", state.oidc_token(chat_account, url).expect("t"), message.clone()).await, 200);
    assert_eq!(send("/", state.oidc_token("mallory@example.com", url).expect("t"), message.clone()).await, 401);
    assert_eq!(send("/", state.chat_token("123456789012").expect("t"), message.clone()).await, 401, "the other form");
    let push = json!({"message": {"data": "e30=", "messageId": "1"}});
    let audience = "https://jit-chat.example.com/events";
    assert_eq!(send("/events", state.oidc_token(local::PUSH_ACCOUNT, audience).expect("t"), push.clone()).await, 204);
    assert_eq!(send("/events", state.oidc_token(local::PUSH_ACCOUNT, url).expect("t"), push.clone()).await, 401);
    assert_eq!(send("/events", state.chat_token(url).expect("t"), push).await, 401, "Chat's token is not a push's");
}

/// Bob removes the app: Chat tells it, his next request comes by mail only; once he adds the
/// app again, the next one reaches him in Chat.
#[tokio::test]
async fn a_reviewer_who_removed_the_app_gets_mail_only_until_they_add_it_again() {
    let local = Local::start(Vec::new()).await;
    let removed = local.in_chat(json!({"type": "REMOVED_FROM_SPACE", "email": BOB})).await;
    assert_eq!(removed["status"], 200, "{removed}");
    let calls = || async {
        let calls: Value = json_answer(local.http.get(local.emulator("/_emulator/calls"))).await;
        calls["chat.findDirectMessage"].as_u64().unwrap_or(0)
    };
    local.ask(&[BOB]).await;
    // The app looked for Bob's direct message (none since he removed it) and posted nothing.
    for _ in 0..200 {
        if calls().await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(calls().await, 1, "one lookup, as his direct message is gone");
    assert!(local.cards().await.is_empty(), "no card for someone who removed the app");
    let mailed = || async {
        let mail: Vec<Value> = json_answer(local.http.get(local.emulator("/_emulator/mail"))).await;
        mail.iter().any(|m| m.to_string().contains(BOB))
    };
    let mut waited = 0;
    while !mailed().await && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(mailed().await, "Bob is still mailed");

    let added = local.in_chat(json!({"type": "ADDED_TO_SPACE", "email": BOB})).await;
    assert_eq!(added["status"], 200, "{added}");
    local.ask(&[BOB]).await;
    local.cards_until(&[BOB], state_is("APPROVAL_AWAITED")).await;
    assert_eq!(calls().await, 1, "his direct message is recorded again: no lookup");
}

/// Issue 21: Google's ID tokens name their issuer `https://accounts.google.com` or
/// `accounts.google.com`, and Google's own verifiers take both: so do Chat's endpoint-URL form
/// and the push endpoint. Any other issuer is refused.
#[tokio::test]
async fn google_id_tokens_are_taken_with_either_form_of_googles_issuer() {
    let (backend, at) = chat_with_url_audience().await;
    let state = backend.emulator.state.clone();
    let token = |issuer: &str, email: &str, audience: &str| {
        let now = common::timestamp::Timestamp::now().unix_seconds();
        let claims = json!({"iss": issuer, "aud": audience, "sub": "1", "email": email, "email_verified": true,
            "iat": now, "exp": now + 600});
        state.google_oidc_key.sign_json(&claims).expect("signed")
    };
    let send = |path: &'static str, token: String, body: Value| {
        let request = backend.http.post(format!("http://{at}{path}")).bearer_auth(token).json(&body);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let message = json!({"type": "MESSAGE", "user": {"name": "users/1", "email": BOB, "type": "HUMAN"}});
    let push = json!({"message": {"data": "e30=", "messageId": "1"}});
    let push_audience = "https://jit-chat.example.com/events";
    let chat_account = common::chat::CHAT_ACCOUNT;
    for (issuer, chat, pushed) in [
        ("https://accounts.google.com", 200, 204),
        ("accounts.google.com", 200, 204),
        ("https://accounts.example.com", 401, 401),
    ] {
        let status = send("/", token(issuer, chat_account, URL_AUDIENCE), message.clone()).await;
        assert_eq!(status, chat, "Chat's token from {issuer}");
        let status = send("/events", token(issuer, local::PUSH_ACCOUNT, push_audience), push.clone()).await;
        assert_eq!(status, pushed, "a push token from {issuer}");
    }
}
