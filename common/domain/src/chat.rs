//! Google Chat: the card a reviewer decides on, and the events Chat sends when they do. Pure:
//! `common::gcp::chat` posts and updates cards, `functions/chat` receives the events.
//!
//! The app is a Chat app over HTTP (not a Workspace add-on): events arrive as Chat's `Event`
//! (`type`, `user`, `space`, `common.invokedFunction`, `common.formInputs`), and replies are
//! `actionResponse`s (`UPDATE_MESSAGE` to edit the clicked card, `DIALOG` to ask a reason).

use serde_json::{Value, json};

use crate::email::Email;
use crate::entitlement::EntitlementId;
use crate::lifecycle::{Record, Review, State};
use crate::timestamp::Timestamp;

/// The account Google Chat calls apps as.
pub const CHAT_ACCOUNT: &str = "chat@system.gserviceaccount.com";

/// The card's actions (`common.invokedFunction`).
pub const APPROVE: &str = "approve";
/// Opens the reason dialog, and submits it.
pub const DENY: &str = "deny";
/// Emergency access: ratify it after the fact (a dialog where the policy asks a reason).
pub const RATIFY: &str = "ratify";
/// Emergency access: reject it (revoked if live); a dialog asks the reason.
pub const REJECT: &str = "reject";

/// The message ID of a request's card in every space it is posted to: Chat's rules are
/// `client-`, then lowercase letters, digits and hyphens, 63 characters at most. Our request
/// IDs (`mpa-` and 16 base64url characters) are written in hex, so no two collide.
pub fn message_id(request_id: &str) -> String {
    let hex: String = request_id.bytes().map(|b| format!("{b:02x}")).collect();
    let mut id = format!("client-{hex}");
    id.truncate(63);
    id
}

/// The `requestId` of the create that posts a request's card in `space`: one per space and
/// request, never shared between spaces. Google does not say whether Chat deduplicates request
/// IDs per space or per app; shared across spaces, a per-app reading would answer reviewer
/// two's create with reviewer one's message, and reviewer two would get no card. Shaped as a
/// UUID (Chat recommends one; AIP-155's examples hold request IDs to 36 characters): the
/// first 16 bytes of SHA-256 over both names, version 8 (RFC 9562, name-based with SHA-256).
pub fn request_id(space: &str, request_id: &str) -> String {
    let input = format!("{space}\n{request_id}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// What to tell whoever set the app up when an event arrives in the Workspace add-on shape.
pub const ADD_ON_HINT: &str = "this event is a Google Workspace add-on's (commonEventObject, chat.*Payload): JIT access is a Chat app over HTTP. In the Google Chat API's Configuration page, untick 'Build this Chat app as a Google Workspace add-on', keep the HTTP endpoint URL and authentication audience, and tick 'Receive 1:1 messages'";

/// Whether `event` has the shape Chat sends apps built as Google Workspace add-ons
/// (`commonEventObject`, `chat.buttonClickedPayload`, `chat.messagePayload`, …) instead of a
/// Chat app's `Event` (`type`, `common`). Read only to say how to configure the app: such an
/// event is never acted on.
pub fn is_add_on_event(event: &Value) -> bool {
    let chat_payload = event["chat"].as_object().is_some_and(|chat| chat.keys().any(|k| k.ends_with("Payload")));
    event.get("commonEventObject").is_some() || chat_payload
}

/// Chat card text allows a little HTML: what people typed must not become markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn row(label: &str, value: &str) -> Value {
    json!({"decoratedText": {"topLabel": label, "text": escape(value), "wrapText": true}})
}

fn time(seconds: i64) -> String {
    Timestamp::from_unix_seconds(seconds).map(|t| t.to_string()).unwrap_or_default()
}

/// The request's card as `cardsV2`: who asks for what, where, why and until when, its true
/// state, and, while it awaits approval, Approve, Deny (a dialog asks the reason) and Open in
/// browser. `note` is a line for whoever clicked (a refusal, say).
pub fn card(record: &Record, now: Timestamp, base_url: &str, note: Option<&str>) -> Value {
    let first = record.entitlements.first().map(String::as_str).unwrap_or_default();
    let (role, resource) = match EntitlementId::parse(first) {
        Ok(id) => (id.role().as_str().to_string(), id.resource().to_string()),
        Err(_) => (first.to_string(), String::new()),
    };
    let state = record.state(now);
    let review = record.review(now);
    let mut widgets = vec![
        row(if review.is_some() { "Emergency access by" } else { "Requested by" }, record.beneficiary.as_str()),
        row("Role", &role),
        row("On", &resource),
        row("Justification", &record.justification),
        row("Window (UTC)", &format!("{} to {}", time(record.start), time(record.effective_end()))),
    ];
    match (review, record.break_glass) {
        (Some(review), Some(terms)) => {
            let count = format!("{} of {} ratifications", record.ratifiers().len(), record.approvals_needed);
            widgets.push(row("Review", &format!("{}, {count}, due {}", review.name(), time(terms.review_deadline))));
        }
        _ => widgets.push(row("Approvals", &format!("{} of {}", record.approvers().len(), record.approvals_needed))),
    }
    widgets.push(row("State", state.name()));
    if let Some(note) = note {
        widgets.push(json!({"textParagraph": {"text": escape(note)}}));
    }
    let parameters = json!([{"key": "id", "value": record.id}]);
    let mut buttons = Vec::new();
    let (yes, no) = match review {
        Some(Review::Pending) => (Some(("Ratify", RATIFY)), Some(("Reject", REJECT))),
        None if state == State::ApprovalAwaited => (Some(("Approve", APPROVE)), Some(("Deny", DENY))),
        _ => (None, None),
    };
    if let Some((text, function)) = yes {
        let action = if record.approver_reason_required {
            json!({"function": function, "parameters": parameters, "interaction": "OPEN_DIALOG"})
        } else {
            json!({"function": function, "parameters": parameters})
        };
        buttons.push(json!({"text": text, "onClick": {"action": action}}));
    }
    if let Some((text, function)) = no {
        buttons.push(json!({"text": text, "onClick": {"action": {
            "function": function, "parameters": parameters, "interaction": "OPEN_DIALOG"}}}));
    }
    let link = format!("{}/?request={}", base_url.trim_end_matches('/'), record.id);
    buttons.push(json!({"text": "Open in browser", "onClick": {"openLink": {"url": link}}}));
    widgets.push(json!({"buttonList": {"buttons": buttons}}));
    json!([{
        "cardId": "request",
        "card": {
            "header": {
                "title": title(record, state, review),
                "subtitle": escape(&match review {
                    Some(_) => format!("{} used emergency access to {role}", record.beneficiary),
                    None => format!("{} asks for {role}", record.beneficiary),
                }),
            },
            "sections": [{"widgets": widgets}],
        },
    }])
}

fn title(record: &Record, state: State, review: Option<Review>) -> &'static str {
    match review {
        Some(Review::Pending) => "Emergency access: awaiting review",
        Some(Review::Ratified) => "Emergency access: ratified",
        Some(Review::Rejected) => "Emergency access: rejected",
        Some(Review::Unreviewed) if record.escalated() => "Emergency access: unreviewed, escalated",
        Some(Review::Unreviewed) => "Emergency access: unreviewed",
        None if state == State::ApprovalAwaited => "Approval requested",
        None => "Access request",
    }
}

/// The reply that edits the clicked card in place.
pub fn update_message(cards: Value) -> Value {
    json!({"actionResponse": {"type": "UPDATE_MESSAGE"}, "cardsV2": cards})
}

/// The dialog that asks a reviewer for their reason: always to deny, and to approve where
/// the approval policy asks approvers for one. Submitting it calls `function` again.
pub fn reason_dialog(function: &str, request_id: &str) -> Value {
    let (title, label, button) = match function {
        APPROVE => ("Approve the request", "Why do you approve it?", "Approve"),
        RATIFY => ("Ratify the emergency access", "Why do you ratify it?", "Ratify"),
        REJECT => ("Reject the emergency access", "Why do you reject it? A live grant is revoked.", "Reject"),
        _ => ("Deny the request", "Why do you deny it?", "Deny"),
    };
    json!({"actionResponse": {"type": "DIALOG", "dialogAction": {"dialog": {"body": {
        "header": {"title": title},
        "sections": [{"widgets": [
            {"textInput": {"name": "reason", "label": label, "type": "MULTIPLE_LINE"}},
            {"buttonList": {"buttons": [{"text": button, "onClick": {"action": {
                "function": function, "parameters": [{"key": "id", "value": request_id}]}}}]}},
        ]}],
    }}}}})
}

/// Closes the dialog with a status Chat shows the reviewer (`OK`, or the error's code).
pub fn close_dialog(code: &str, message: &str) -> Value {
    json!({"actionResponse": {"type": "DIALOG", "dialogAction": {
        "actionStatus": {"statusCode": code, "userFacingMessage": message}}}})
}

/// What a Chat event asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A person added the app; `user` is `users/ID`; `direct_message` the space, when they
    /// added it to a direct message.
    Added { email: Email, user: String, direct_message: Option<String> },
    /// A person removed the app (from a direct message, `direct`).
    Removed { email: Email, user: String, direct: bool },
    /// A click on one of our cards' buttons, or a dialog opened or submitted from one.
    Clicked { email: Email, function: String, request: String, dialog: Dialog, reason: String },
    /// Anything else (a message typed to the app): answered with a short help text.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialog {
    None,
    Requested,
    Submitted,
    Cancelled,
}

/// Reads a Chat event. Only human users act: Chat names them by `users/ID` with their
/// address; a bot or a user without an address is refused.
pub fn parse_event(event: &Value) -> Result<ChatEvent, String> {
    let user = &event["user"];
    let email = || -> Result<Email, String> {
        if user["type"].as_str().is_some_and(|t| t != "HUMAN") {
            return Err("only people act in JIT access".into());
        }
        let address = user["email"].as_str().ok_or("the event names no user address")?;
        Email::parse(address).map_err(|e| e.to_string())
    };
    match event["type"].as_str().unwrap_or_default() {
        "ADDED_TO_SPACE" | "REMOVED_FROM_SPACE" => {
            let name = user["name"].as_str().filter(|n| n.starts_with("users/")).ok_or("the event names no user")?;
            let space = &event["space"];
            let direct = space["spaceType"].as_str() == Some("DIRECT_MESSAGE") || space["type"].as_str() == Some("DM");
            let (email, user) = (email()?, name.to_string());
            if event["type"] == "REMOVED_FROM_SPACE" {
                return Ok(ChatEvent::Removed { email, user, direct });
            }
            let direct_message =
                space["name"].as_str().filter(|n| direct && n.starts_with("spaces/")).map(str::to_string);
            Ok(ChatEvent::Added { email, user, direct_message })
        }
        "CARD_CLICKED" => {
            let common = &event["common"];
            let function = common["invokedFunction"]
                .as_str()
                .or(event["action"]["actionMethodName"].as_str())
                .ok_or("the click names no function")?;
            let request = common["parameters"]["id"].as_str().ok_or("the click names no request")?;
            let dialog = match event["dialogEventType"].as_str() {
                Some("REQUEST_DIALOG") => Dialog::Requested,
                Some("SUBMIT_DIALOG") => Dialog::Submitted,
                Some("CANCEL_DIALOG") => Dialog::Cancelled,
                _ => Dialog::None,
            };
            let reason = common["formInputs"]["reason"]["stringInputs"]["value"][0].as_str().unwrap_or_default();
            Ok(ChatEvent::Clicked {
                email: email()?,
                function: function.to_string(),
                request: request.to_string(),
                dialog,
                reason: reason.trim().to_string(),
            })
        }
        _ => Ok(ChatEvent::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::ActivationType;
    use crate::lifecycle::Entry;

    fn record() -> Record {
        let alice = Email::parse("alice@example.com").expect("email");
        let now = Timestamp::now().unix_seconds();
        Record {
            id: "mpa-AQEBAQEBAQEBAQEB".into(),
            activation_type: ActivationType::Mpa,
            beneficiary: alice.clone(),
            reviewers: vec![Email::parse("bob@example.com").expect("email")],
            entitlements: vec!["project-1:roles/compute.admin".into()],
            justification: "<b>BUG-1</b>".into(),
            start: now,
            end: now + 3600,
            request_expiry: now + 3600,
            approvals_needed: 1,
            approver_reason_required: false,
            break_glass: None,
            token: None,
            timeline: vec![Entry::Requested { at: now, actor: alice }],
        }
    }

    #[test]
    fn message_ids_follow_chats_rules_and_differ_per_request() {
        let id = message_id("mpa-AQEBAQEBAQEBAQEB");
        assert!(id.starts_with("client-") && id.len() <= 63, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{id}");
        assert_ne!(id, message_id("mpa-AQEBAQEBAQEBAQEC"));
    }

    #[test]
    fn request_ids_differ_per_space_and_request_and_look_like_uuids() {
        let one = request_id("spaces/dm-1", "mpa-AQEBAQEBAQEBAQEB");
        assert_eq!(one, request_id("spaces/dm-1", "mpa-AQEBAQEBAQEBAQEB"), "stable across deliveries");
        assert_ne!(one, request_id("spaces/dm-2", "mpa-AQEBAQEBAQEBAQEB"), "another reviewer's space");
        assert_ne!(one, request_id("spaces/dm-1", "mpa-AQEBAQEBAQEBAQEC"), "another request");
        let groups: Vec<usize> = one.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{one}");
        assert!(one.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && one.as_bytes()[14] == b'8', "{one}");
    }

    #[test]
    fn add_on_events_are_told_from_chat_app_events() {
        let add_on = json!({"commonEventObject": {"hostApp": "CHAT"}, "chat": {"user": {"name": "users/1"},
            "buttonClickedPayload": {"space": {"name": "spaces/x"}}}});
        assert!(is_add_on_event(&add_on));
        assert!(is_add_on_event(&json!({"chat": {"messagePayload": {}}})));
        let app = json!({"type": "CARD_CLICKED", "common": {"invokedFunction": "approve"}});
        assert!(!is_add_on_event(&app));
        assert!(!is_add_on_event(&json!({"type": "MESSAGE"})));
    }

    #[test]
    fn the_card_offers_decisions_only_while_approval_is_awaited_and_escapes_what_people_typed() {
        let record = record();
        let open = card(&record, Timestamp::now(), "https://jit.example.com/", None).to_string();
        assert!(open.contains("\"function\":\"approve\"") && open.contains("OPEN_DIALOG"), "{open}");
        assert!(open.contains("https://jit.example.com/?request=mpa-AQEBAQEBAQEBAQEB"));
        assert!(!open.contains("<b>") && open.contains("&lt;b&gt;BUG-1"), "{open}");
        let later = Timestamp::from_unix_seconds(record.end + 60).expect("t");
        let closed = card(&record, later, "https://jit.example.com", Some("Refused: <x>")).to_string();
        assert!(!closed.contains("\"function\":\"approve\"") && closed.contains("EXPIRED"), "{closed}");
        assert!(closed.contains("Refused: &lt;x&gt;"));
    }

    #[test]
    fn an_emergency_card_offers_ratify_and_reject_while_its_review_is_pending() {
        let mut record = record();
        record.break_glass = Some(crate::lifecycle::BreakGlass { review_deadline: record.start + 600 });
        record.timeline.push(Entry::Activated { at: record.start });
        let pending = card(&record, Timestamp::now(), "https://jit.example.com", None).to_string();
        for shown in [
            "Emergency access: awaiting review",
            "\"function\":\"ratify\"",
            "\"function\":\"reject\"",
            "0 of 1 ratifications",
        ] {
            assert!(pending.contains(shown), "{shown} missing from {pending}");
        }
        assert!(!pending.contains("\"function\":\"approve\""), "{pending}");
        let late = Timestamp::from_unix_seconds(record.start + 601).expect("t");
        let unreviewed = card(&record, late, "https://jit.example.com", None).to_string();
        assert!(unreviewed.contains("UNREVIEWED") && !unreviewed.contains("\"function\":\"ratify\""), "{unreviewed}");
    }

    #[test]
    fn events_are_read_for_people_only() {
        let click = json!({"type": "CARD_CLICKED", "user": {"name": "users/1", "email": "bob@example.com", "type": "HUMAN"},
            "common": {"invokedFunction": "deny", "parameters": {"id": "mpa-x"},
                "formInputs": {"reason": {"stringInputs": {"value": [" no "]}}}},
            "dialogEventType": "SUBMIT_DIALOG", "isDialogEvent": true});
        let ChatEvent::Clicked { email, function, request, dialog, reason } = parse_event(&click).expect("valid")
        else {
            panic!("a click");
        };
        assert_eq!(
            (email.as_str(), function.as_str(), request.as_str(), dialog, reason.as_str()),
            ("bob@example.com", "deny", "mpa-x", Dialog::Submitted, "no")
        );
        let mut bot = click.clone();
        bot["user"]["type"] = json!("BOT");
        assert!(parse_event(&bot).is_err());
        let mut nameless = click.clone();
        nameless["user"] = json!({"name": "users/1"});
        assert!(parse_event(&nameless).is_err());
        let added = json!({"type": "ADDED_TO_SPACE", "user": {"name": "users/7", "email": "carol@example.com"},
            "space": {"name": "spaces/x", "spaceType": "DIRECT_MESSAGE"}});
        let carol = Email::parse("carol@example.com").expect("email");
        assert_eq!(
            parse_event(&added),
            Ok(ChatEvent::Added {
                email: carol.clone(),
                user: "users/7".into(),
                direct_message: Some("spaces/x".into())
            })
        );
        let mut removed = added.clone();
        removed["type"] = json!("REMOVED_FROM_SPACE");
        assert_eq!(
            parse_event(&removed),
            Ok(ChatEvent::Removed { email: carol, user: "users/7".into(), direct: true })
        );
        assert_eq!(parse_event(&json!({"type": "MESSAGE"})), Ok(ChatEvent::Other));
    }
}
