//! Turns an activation event into a mail, as the reference app words it: HTML and plain text,
//! every value from the event escaped, times in `NOTIFICATION_TIMEZONE`.
//!
//! The event data is not trusted: anyone allowed to publish to the topic could send one, so
//! addresses are parsed, and subjects and headers lose control characters (no header
//! injection through a name or a justification).

use common::email::Email;
use common::event::{Event, Kind};
use serde_json::Value;

/// One mail, before it becomes SendGrid's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<Email>,
    pub cc: Vec<Email>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Extra headers: threading (`Message-ID`, `In-Reply-To`, `References`).
    pub headers: Vec<(String, String)>,
}

/// How to render.
#[derive(Debug, Clone)]
pub struct Style {
    pub time_zone: jiff::tz::TimeZone,
    /// The domain of thread IDs, from the sender's address.
    pub thread_domain: String,
    /// Send `ActivationSelfApproved` mail at all.
    pub self_approved: bool,
    /// `BASE_URL` without a trailing `/`: the only start a link in mail can have. Links in
    /// events are never mailed as they are, so that whoever may publish to the topic cannot
    /// send phishing from our sender.
    pub base_url: String,
    /// `ADMINISTRATORS` (users and groups, as addresses): told of every emergency access.
    pub administrators: Vec<Email>,
}

/// Why an event yields no mail. Both are final: the message is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Known, and deliberately not mailed (self-approval mail turned off).
    NotMailed(String),
    /// Unknown type or malformed content: it can never be sent.
    Poison(String),
}

pub fn compose(event: &Value, style: &Style) -> Result<Mail, Skip> {
    let Some(kind) = Event::kind_of(event) else {
        return Err(Skip::Poison(format!(
            "unknown event type '{}'",
            clean(event["type"].as_str().unwrap_or_default())
        )));
    };
    let attributes = &event["attributes"];
    let fields = Fields { attributes, style };
    match kind {
        Kind::RequestActivation => request_activation(&fields),
        Kind::ActivationApproved => activation_approved(&fields),
        Kind::ActivationSelfApproved if style.self_approved => self_approved(&fields),
        Kind::ActivationSelfApproved => Err(Skip::NotMailed("self-approval mail is turned off".into())),
        Kind::BreakGlassActivated => break_glass(&fields),
        Kind::ApprovalRecorded
        | Kind::RequestDenied
        | Kind::RequestWithdrawn
        | Kind::ActivationEnded
        | Kind::ActivationRevoked
        | Kind::ActivationFailed
        | Kind::ActivationExternallyModified
        | Kind::ExtensionRequested
        | Kind::ActivationExtended
        | Kind::ExtensionFailed
        | Kind::RatificationRecorded
        | Kind::BreakGlassRejected
        | Kind::BreakGlassUnreviewed => lifecycle(&fields, kind),
    }
}

/// Who is told what of a change, and whether it is addressed to the reviewers (they have
/// something to do, or nothing any more) rather than to the requester.
struct Change {
    what: String,
    to: Audience,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Requester,
    Reviewers,
    /// Emergency access: the administrators, everyone else in copy.
    Administrators,
}

/// Every other change to a request: who did what, with their reason, told to everyone
/// concerned (the requester, the reviewers and the approvers), in the request's thread.
fn lifecycle(fields: &Fields<'_>, kind: Kind) -> Result<Mail, Skip> {
    let beneficiary = fields.email("beneficiary")?;
    let reviewers = fields.emails("reviewers")?;
    let approvers = fields.emails("approvers")?;
    let project = fields.text("project_id");
    let reason = fields.text("reason");
    let Change { what, to } = change(fields, kind, &beneficiary)?;
    let intro = if reason.is_empty() { what } else { format!("{what} Reason: {reason}") };
    let mut others: Vec<Email> = reviewers.into_iter().chain(approvers).filter(|e| e != &beneficiary).collect();
    let emergency = fields.attributes["break_glass"].is_object();
    let administrators: Vec<Email> = if emergency { fields.style.administrators.clone() } else { Vec::new() };
    if to != Audience::Administrators {
        others.extend(administrators.iter().cloned());
    }
    others.sort();
    others.dedup();
    let (to, cc) = match to {
        Audience::Reviewers if !others.is_empty() => (others, vec![beneficiary.clone()]),
        Audience::Administrators if !administrators.is_empty() => {
            let mut cc: Vec<Email> = others.into_iter().filter(|e| !administrators.contains(e)).collect();
            cc.push(beneficiary.clone());
            (administrators, cc)
        }
        _ => (vec![beneficiary.clone()], others),
    };
    let thread = fields.thread_id();
    let base_url = fields.style.base_url.clone();
    let details = details(fields, &beneficiary);
    let subject = if emergency {
        format!("Re: EMERGENCY ACCESS: {beneficiary} broke glass on {project}")
    } else {
        format!("Re: {beneficiary} requests access to project {project}")
    };
    Ok(Mail {
        to,
        cc,
        subject,
        text: format!("{intro}\n\n{}\nOpen JIT access: {base_url}\n", text_table(&details)),
        html: page(&intro, &details, link(&base_url).map(|url| ("Open JIT access", url)), "", ""),
        headers: vec![("In-Reply-To".into(), thread.clone()), ("References".into(), thread)],
    })
}

/// What a change says, and to whom it goes first.
fn change(fields: &Fields<'_>, kind: Kind, beneficiary: &Email) -> Result<Change, Skip> {
    let actor = fields.text("actor");
    let to = |what: String, to: Audience| Ok(Change { what, to });
    let (what, to_reviewers) = match kind {
        Kind::RequestActivation
        | Kind::ActivationApproved
        | Kind::ActivationSelfApproved
        | Kind::BreakGlassActivated => {
            return Err(Skip::Poison(format!("{kind} has a mail of its own")));
        }
        Kind::RatificationRecorded => {
            let complete = fields.attributes["break_glass"]["review"] == "RATIFIED";
            let count =
                format!("{} of {} ratifications", fields.number("approvals"), fields.number("approvals_needed"));
            let what = if complete {
                format!("{actor} ratified the emergency access of {beneficiary} ({count}): the review is complete.")
            } else {
                format!("{actor} ratified the emergency access of {beneficiary} ({count}).")
            };
            return to(what, Audience::Requester);
        }
        Kind::BreakGlassRejected => {
            let what =
                format!("{actor} rejected the emergency access of {beneficiary}; it is revoked if it was still live.");
            return to(what, Audience::Reviewers);
        }
        Kind::BreakGlassUnreviewed => {
            let what = format!(
                "The emergency access of {beneficiary} was not ratified by its deadline, {}: review what was done with it now.",
                fields.time_in(&fields.attributes["break_glass"]["review_deadline"])
            );
            return to(what, Audience::Administrators);
        }
        Kind::ApprovalRecorded if !fields.text("extension_end_time").is_empty() => (
            format!(
                "{actor} approved extending the access of {beneficiary} until {} ({} of {} approvals needed).",
                fields.time("extension_end_time"),
                fields.number("approvals"),
                fields.number("approvals_needed")
            ),
            false,
        ),
        Kind::ApprovalRecorded => (
            format!(
                "{actor} approved the request of {beneficiary} ({} of {} approvals needed).",
                fields.number("approvals"),
                fields.number("approvals_needed")
            ),
            false,
        ),
        Kind::RequestDenied => (format!("{actor} denied the request of {beneficiary}."), false),
        Kind::RequestWithdrawn => (format!("{beneficiary} withdrew the request; nothing is needed from you."), true),
        Kind::ActivationEnded if !fields.text("superseded_by").is_empty() => (
            format!(
                "{beneficiary} activated the role again ({}); the earlier access is replaced by it.",
                fields.text("superseded_by")
            ),
            true,
        ),
        Kind::ActivationEnded => (format!("{beneficiary} ended the access early; it is removed."), true),
        Kind::ActivationRevoked => (format!("{actor} revoked the access of {beneficiary}; it is removed."), false),
        Kind::ActivationFailed => (format!("Granting the access of {beneficiary} failed; nothing was granted."), false),
        Kind::ExtensionRequested => (
            format!(
                "{beneficiary} asks for the access to last until {}; it needs your approval again.",
                fields.time("extension_end_time")
            ),
            true,
        ),
        Kind::ExtensionFailed => (
            format!("Extending the access of {beneficiary} failed; it still ends at {}.", fields.time("end_time")),
            false,
        ),
        Kind::ActivationExtended => {
            (format!("The access of {beneficiary} now lasts until {}.", fields.time("end_time")), false)
        }
        Kind::ActivationExternallyModified => {
            (format!("The access of {beneficiary} was changed or removed outside JIT access."), false)
        }
    };
    to(what, if to_reviewers { Audience::Reviewers } else { Audience::Requester })
}

/// Emergency access, granted at once: everyone who may ratify it and the administrators are
/// told, with a link to the request where they ratify or reject it.
fn break_glass(fields: &Fields<'_>) -> Result<Mail, Skip> {
    let beneficiary = fields.email("beneficiary")?;
    let mut to = fields.emails("reviewers")?;
    to.extend(fields.style.administrators.iter().cloned());
    to.retain(|e| e != &beneficiary);
    to.sort();
    to.dedup();
    let project = fields.text("project_id");
    let role = fields.text("role");
    let id: String =
        fields.text("activation_id").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    let review_url = format!("{}/?request={id}", fields.style.base_url);
    let mut details = details(fields, &beneficiary);
    let deadline = fields.time_in(&fields.attributes["break_glass"]["review_deadline"]);
    details.push(("Review due", deadline.clone()));
    let needed = fields.number("approvals_needed");
    let intro = format!(
        "{beneficiary} used emergency access (break glass): {role} on {project} was granted at once, without approval. It needs {needed} ratifications by {deadline}; ratify it if it was warranted, reject it (a live grant is revoked at once) if not."
    );
    let footer = "You receive this because you may approve this role, or are an administrator of JIT access. Unratified emergency access is escalated to the administrators.";
    Ok(Mail {
        to,
        cc: vec![beneficiary.clone()],
        subject: format!("EMERGENCY ACCESS: {beneficiary} broke glass on {project}"),
        text: format!("{intro}\n\n{}\nReview it: {review_url}\n\n{footer}", text_table(&details)),
        html: page(&intro, &details, Some(("Review the emergency access", &review_url)), "", footer),
        headers: vec![("Message-ID".into(), fields.thread_id())],
    })
}

struct Fields<'a> {
    attributes: &'a Value,
    style: &'a Style,
}

impl Fields<'_> {
    fn text(&self, name: &str) -> String {
        clean(self.attributes[name].as_str().unwrap_or_default())
    }

    fn email(&self, name: &str) -> Result<Email, Skip> {
        Email::parse(self.attributes[name].as_str().unwrap_or_default())
            .map_err(|e| Skip::Poison(format!("{name}: {e}")))
    }

    /// Numbers as text, too (`approvals`).
    fn number(&self, name: &str) -> String {
        match &self.attributes[name] {
            Value::Number(n) => n.to_string(),
            other => clean(other.as_str().unwrap_or_default()),
        }
    }

    fn emails(&self, name: &str) -> Result<Vec<Email>, Skip> {
        let list = self.attributes[name].as_array().ok_or_else(|| Skip::Poison(format!("{name} is not a list")))?;
        list.iter()
            .map(|v| Email::parse(v.as_str().unwrap_or_default()).map_err(|e| Skip::Poison(format!("{name}: {e}"))))
            .collect()
    }

    /// An RFC 3339 time, shown in the configured zone: `Tue, 24 Nov 2026 16:00 CET`.
    fn time(&self, name: &str) -> String {
        self.time_in(&self.attributes[name])
    }

    fn time_in(&self, value: &Value) -> String {
        let raw = value.as_str().unwrap_or_default();
        match raw.parse::<jiff::Timestamp>() {
            Ok(timestamp) => {
                timestamp.to_zoned_datetime(self.style.time_zone.clone()).strftime("%a, %d %b %Y %H:%M %Z").to_string()
            }
            Err(_) => clean(raw),
        }
    }

    fn thread_id(&self) -> String {
        let id: String = self
            .text("activation_id")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        format!("<{id}@{}>", self.style.thread_domain)
    }
}

fn request_activation(fields: &Fields<'_>) -> Result<Mail, Skip> {
    let beneficiary = fields.email("beneficiary")?;
    let reviewers = fields.emails("reviewers")?;
    let project = fields.text("project_id");
    let action_url = review_link(&fields.style.base_url, &fields.text("action_url"))?;
    let details = details(fields, &beneficiary);
    let intro =
        format!("{beneficiary} requests your approval to activate a role on the Google Cloud project {project}.");
    let expiry = fields.time("request_expiry_time");
    Ok(Mail {
        to: reviewers,
        cc: vec![beneficiary.clone()],
        subject: format!("{beneficiary} requests access to project {project}"),
        text: format!(
            "{intro}\n\n{}\nReview the request: {action_url}\nThe request expires on {expiry}.\n\n{}",
            text_table(&details),
            "You receive this because you were chosen as a reviewer. Only approve requests you understand; ignore this mail otherwise."
        ),
        html: page(
            &intro,
            &details,
            Some(("View request", &action_url)),
            &format!("The request expires on {}.", escape(&expiry)),
            "You receive this because you were chosen as a reviewer. Only approve requests you understand; ignore this mail otherwise.",
        ),
        headers: vec![("Message-ID".into(), fields.thread_id())],
    })
}

fn activation_approved(fields: &Fields<'_>) -> Result<Mail, Skip> {
    let beneficiary = fields.email("beneficiary")?;
    let approver = fields.email("approver")?;
    let reviewers = fields.emails("reviewers")?;
    let project = fields.text("project_id");
    let base_url = fields.style.base_url.clone();
    let details = details(fields, &beneficiary);
    let intro = format!(
        "{approver} approved the request of {beneficiary} to activate a role on the Google Cloud project {project}."
    );
    let thread = fields.thread_id();
    Ok(Mail {
        to: vec![beneficiary.clone()],
        cc: reviewers,
        subject: format!("Re: {beneficiary} requests access to project {project}"),
        text: format!("{intro}\n\n{}\nOpen JIT access: {base_url}\n", text_table(&details)),
        html: page(&intro, &details, link(&base_url).map(|url| ("Open JIT access", url)), "", ""),
        headers: vec![("In-Reply-To".into(), thread.clone()), ("References".into(), thread)],
    })
}

fn self_approved(fields: &Fields<'_>) -> Result<Mail, Skip> {
    let beneficiary = fields.email("beneficiary")?;
    let project = fields.text("project_id");
    let roles = fields.text("role");
    let base_url = fields.style.base_url.clone();
    let details = details(fields, &beneficiary);
    let intro = format!("You activated {roles} on the Google Cloud project {project}.");
    Ok(Mail {
        to: vec![beneficiary],
        cc: Vec::new(),
        subject: format!("Activated roles {roles} on {project}"),
        text: format!("{intro}\n\n{}\nOpen JIT access: {base_url}\n", text_table(&details)),
        html: page(&intro, &details, link(&base_url).map(|url| ("Open JIT access", url)), "", ""),
        headers: Vec::new(),
    })
}

fn link(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

/// The review link: our `BASE_URL` with the activation token taken from the event's link. Only
/// the token travels; it must look like a JWT (three Base64url parts, in the link's URL form),
/// so nothing else can ride along in the query.
fn review_link(base_url: &str, event_link: &str) -> Result<String, Skip> {
    let carried = event_link
        .split_once('?')
        .map(|(_, query)| query)
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("activation="))
        .unwrap_or_default();
    let token = common::token::from_url_form(carried);
    let jwt_like = !carried.is_empty()
        && token.split('.').count() == 3
        && token.len() <= 16 * 1024
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !jwt_like {
        return Err(Skip::Poison("action_url carries no activation token".into()));
    }
    Ok(format!("{base_url}/?activation={}", common::token::to_url_form(&token)))
}

fn details(fields: &Fields<'_>, beneficiary: &Email) -> Vec<(&'static str, String)> {
    let condition = fields.text("resource_condition");
    vec![
        ("User", beneficiary.to_string()),
        ("Project", fields.text("project_id")),
        ("Role", fields.text("role")),
        ("Condition", if condition.is_empty() { "(none)".into() } else { condition }),
        ("Start", fields.time("start_time")),
        ("End", fields.time("end_time")),
        ("Justification", fields.text("justification")),
    ]
}

fn text_table(rows: &[(&str, String)]) -> String {
    rows.iter().map(|(name, value)| format!("  {:<14} {value}\n", format!("{name}:"))).collect()
}

fn page(intro: &str, rows: &[(&str, String)], button: Option<(&str, &str)>, after: &str, footer: &str) -> String {
    let rows: String = rows
        .iter()
        .map(|(name, value)| {
            format!(
                "<tr><th align=\"left\" style=\"padding:4px 16px 4px 0\">{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let button = button
        .map(|(label, url)| {
            format!(
                "<p><a href=\"{}\" style=\"display:inline-block;padding:10px 18px;background:#1a73e8;color:#fff;border-radius:4px;text-decoration:none\">{}</a></p>",
                escape(url),
                escape(label)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html><body style=\"font-family:Arial,sans-serif;font-size:14px;color:#202124\"><p>{}</p><table>{rows}</table>{button}<p>{after}</p><p style=\"color:#5f6368;font-size:12px\">{}</p></body></html>",
        escape(intro),
        escape(footer)
    )
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Drops control characters (CR and LF among them) and caps the length.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(2_000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn style() -> Style {
        Style {
            time_zone: jiff::tz::TimeZone::get("Europe/Berlin").expect("bundled time zone"),
            thread_domain: "example.com".into(),
            self_approved: true,
            base_url: "https://jit.example.com".into(),
            administrators: vec![Email::parse("admin@example.com").expect("email")],
        }
    }

    fn request_event(justification: &str) -> Value {
        json!({"type": "RequestActivation", "attributes": {
            "activation_id": "mpa-abc", "beneficiary": "alice@example.com", "reviewers": ["bob@example.com"],
            "project_id": "project-1", "role": "roles/compute.admin", "resource_condition": "",
            "start_time": "2026-11-24T15:00:00Z", "end_time": "2026-11-24T16:00:00Z",
            "request_expiry_time": "2026-11-24T16:00:00Z", "justification": justification,
            "base_url": "https://jit.example.com", "action_url": "https://jit.example.com/?activation=eyaa.eybb.cc"}})
    }

    #[test]
    fn request_mail_goes_to_reviewers_with_the_link() {
        let mail = compose(&request_event("BUG-12345"), &style()).expect("mail");
        assert_eq!(mail.to, vec![Email::parse("bob@example.com").expect("email")]);
        assert_eq!(mail.cc, vec![Email::parse("alice@example.com").expect("email")]);
        assert_eq!(mail.subject, "alice@example.com requests access to project project-1");
        assert!(mail.text.contains("https://jit.example.com/?activation=aa~~bb~cc"), "{}", mail.text);
        assert!(mail.html.contains("href=\"https://jit.example.com/?activation=aa~~bb~cc\""), "{}", mail.html);
        assert!(mail.text.contains("Tue, 24 Nov 2026 16:00 CET"), "times in the configured zone: {}", mail.text);
        assert_eq!(mail.headers, vec![("Message-ID".to_string(), "<mpa-abc@example.com>".to_string())]);
    }

    #[test]
    fn every_value_is_escaped_in_html() {
        let mail = compose(&request_event("<script>alert(1)</script>"), &style()).expect("mail");
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(mail.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", mail.html);
    }

    #[test]
    fn approval_mail_replies_in_the_same_thread() {
        let mut event = request_event("BUG-1");
        event["type"] = json!("ActivationApproved");
        event["attributes"]["approver"] = json!("bob@example.com");
        let mail = compose(&event, &style()).expect("mail");
        assert_eq!(mail.to, vec![Email::parse("alice@example.com").expect("email")]);
        assert_eq!(mail.subject, "Re: alice@example.com requests access to project project-1");
        assert!(mail.headers.contains(&("In-Reply-To".to_string(), "<mpa-abc@example.com>".to_string())));
        assert!(mail.text.starts_with("bob@example.com approved"), "{}", mail.text);
    }

    #[test]
    fn headers_and_subjects_cannot_be_injected() {
        let mut event = request_event("BUG-1");
        event["attributes"]["project_id"] = json!("p1\r\nBcc: eve@example.com");
        let mail = compose(&event, &style()).expect("mail");
        assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'), "{:?}", mail.subject);
        let mut event = request_event("BUG-1");
        event["attributes"]["beneficiary"] = json!("alice@example.com\r\nBcc: eve@example.com");
        assert!(matches!(compose(&event, &style()), Err(Skip::Poison(_))));
        let mut event = request_event("BUG-1");
        event["attributes"]["activation_id"] = json!("x>\r\nBcc: eve@example.com");
        let mail = compose(&event, &style()).expect("mail");
        assert!(mail.headers.iter().all(|(_, v)| !v.contains('\n') && !v.contains(' ')), "{:?}", mail.headers);
    }

    #[test]
    fn every_lifecycle_change_is_mailed_to_everyone_concerned() {
        let mut event = request_event("BUG-1");
        event["attributes"]["approvers"] = json!(["bob@example.com"]);
        event["attributes"]["actor"] = json!("bob@example.com");
        event["attributes"]["reason"] = json!("<b>not now</b>");
        event["attributes"]["approvals"] = json!(1);
        event["attributes"]["approvals_needed"] = json!(2);
        for (kind, to) in [
            (Kind::ApprovalRecorded.name(), "alice@example.com"),
            (Kind::RequestDenied.name(), "alice@example.com"),
            (Kind::RequestWithdrawn.name(), "bob@example.com"),
            (Kind::ActivationEnded.name(), "bob@example.com"),
            (Kind::ActivationRevoked.name(), "alice@example.com"),
            (Kind::ActivationFailed.name(), "alice@example.com"),
            (Kind::ActivationExternallyModified.name(), "alice@example.com"),
            (Kind::ExtensionFailed.name(), "alice@example.com"),
            (Kind::ExtensionRequested.name(), "bob@example.com"),
            (Kind::ActivationExtended.name(), "alice@example.com"),
        ] {
            event["type"] = json!(kind);
            let mail = compose(&event, &style()).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            assert_eq!(mail.to, vec![Email::parse(to).expect("email")], "{kind}");
            assert!(!mail.cc.is_empty(), "{kind}: everyone concerned hears of it");
            assert!(!mail.html.contains("<b>"), "{kind}: escaped");
            assert!(mail.headers.iter().any(|(name, _)| name == "In-Reply-To"), "{kind}: in the thread");
        }
        event["type"] = json!(Kind::ApprovalRecorded.name());
        assert!(compose(&event, &style()).expect("mail").text.contains("(1 of 2 approvals needed)"));
    }

    #[test]
    fn emergency_access_is_mailed_to_its_reviewers_and_the_administrators_with_a_link_to_review_it() {
        let mut event = request_event("INC-1");
        event["type"] = json!("BreakGlassActivated");
        event["attributes"]["reviewers"] = json!(["bob@example.com", "erin@example.com"]);
        event["attributes"]["approvals_needed"] = json!(2);
        event["attributes"]["approvers"] = json!([]);
        event["attributes"]["break_glass"] =
            json!({"review": "PENDING", "review_deadline": "2026-11-24T19:00:00Z", "ratifications": 0});
        let mail = compose(&event, &style()).expect("mailed");
        let to: Vec<&str> = mail.to.iter().map(Email::as_str).collect();
        assert_eq!(to, ["admin@example.com", "bob@example.com", "erin@example.com"]);
        assert_eq!(mail.cc, vec![Email::parse("alice@example.com").expect("email")]);
        assert!(mail.subject.starts_with("EMERGENCY ACCESS: alice@example.com"), "{}", mail.subject);
        assert!(mail.text.contains("https://jit.example.com/?request=mpa-abc"), "{}", mail.text);
        assert!(mail.text.contains("2 ratifications by Tue, 24 Nov 2026 20:00 CET"), "{}", mail.text);

        event["type"] = json!("BreakGlassUnreviewed");
        event["attributes"]["break_glass"]["review"] = json!("UNREVIEWED");
        let mail = compose(&event, &style()).expect("mailed");
        assert_eq!(mail.to, vec![Email::parse("admin@example.com").expect("email")], "escalated to the administrators");
        assert!(
            mail.cc.iter().any(|e| e.as_str() == "bob@example.com")
                && mail.cc.iter().any(|e| e.as_str() == "alice@example.com")
        );
        assert!(mail.subject.starts_with("Re: EMERGENCY ACCESS"), "in the thread: {}", mail.subject);

        event["type"] = json!("BreakGlassRejected");
        event["attributes"]["actor"] = json!("erin@example.com");
        let mail = compose(&event, &style()).expect("mailed");
        assert!(
            mail.to.iter().any(|e| e.as_str() == "admin@example.com")
                && mail.to.iter().any(|e| e.as_str() == "bob@example.com")
        );
        assert!(mail.text.contains("erin@example.com rejected the emergency access"), "{}", mail.text);
    }

    #[test]
    fn every_kind_of_event_is_mailed_or_deliberately_not() {
        for kind in Kind::ALL {
            let mut event = request_event("BUG-1");
            event["type"] = json!(kind.name());
            event["attributes"]["approvers"] = json!([]);
            event["attributes"]["approver"] = json!("bob@example.com");
            event["attributes"]["break_glass"] =
                json!({"review": "PENDING", "review_deadline": "2026-11-24T19:00:00Z"});
            assert!(compose(&event, &style()).is_ok(), "{kind}");
        }
    }

    #[test]
    fn links_must_be_web_links() {
        let mut event = request_event("BUG-1");
        event["attributes"]["action_url"] = json!("javascript:alert(1)");
        assert!(matches!(compose(&event, &style()), Err(Skip::Poison(_))));
    }

    #[test]
    fn links_are_built_from_base_url_never_taken_from_the_event() {
        // Whoever may publish to the topic cannot make our sender mail their link.
        let mut event = request_event("BUG-1");
        event["attributes"]["action_url"] = json!("https://evil.example/?activation=eyaa.eybb.cc");
        event["attributes"]["base_url"] = json!("https://evil.example");
        let mail = compose(&event, &style()).expect("mail");
        assert!(!mail.text.contains("evil") && !mail.html.contains("evil"), "{}", mail.text);
        assert!(mail.text.contains("https://jit.example.com/?activation=aa~~bb~cc"), "{}", mail.text);
        event["attributes"]["action_url"] = json!("https://jit.example.com/?activation=eya.eyb.c&next=//evil");
        let mail = compose(&event, &style()).expect("mail");
        assert!(mail.text.contains("https://jit.example.com/?activation=a~~b~c\n") && !mail.text.contains("evil"));
        for smuggled in [
            "https://x/?activation=a.b",
            "https://x/",
            "https://x/?activation=a.b.c%0d",
            "https://x/?activation=a.b.c\"x",
        ] {
            event["attributes"]["action_url"] = json!(smuggled);
            assert!(matches!(compose(&event, &style()), Err(Skip::Poison(_))), "{smuggled}");
        }
        event["type"] = json!("ActivationApproved");
        event["attributes"]["approver"] = json!("bob@example.com");
        let mail = compose(&event, &style()).expect("mail");
        assert!(!mail.text.contains("evil") && !mail.html.contains("evil"), "{}", mail.text);
    }

    #[test]
    fn unknown_types_are_poison_and_self_approval_mail_can_be_off() {
        assert!(matches!(compose(&json!({"type": "Nope"}), &style()), Err(Skip::Poison(_))));
        let event = json!({"type": "ActivationSelfApproved", "attributes": {
            "beneficiary": "carol@example.com", "project_id": "project-1", "role": "roles/storage.admin",
            "start_time": "2026-11-24T15:00:00Z", "end_time": "2026-11-24T16:00:00Z", "justification": "x", "base_url": "https://jit.example.com"}});
        let mail = compose(&event, &style()).expect("mail");
        assert_eq!(mail.subject, "Activated roles roles/storage.admin on project-1");
        let off = Style { self_approved: false, ..style() };
        assert!(matches!(compose(&event, &off), Err(Skip::NotMailed(_))));
    }
}
