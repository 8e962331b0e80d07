//! Activation events, as published to Pub/Sub for the mailer and other subscribers.
//!
//! The data keeps the reference app's shape, `{"type": T, "attributes": {...}}` with
//! lowercase keys, times as RFC 3339 strings and lists as arrays, so its subscribers carry
//! over. Unlike the reference, the Pub/Sub message also carries attributes `type` and
//! `version`, so subscriptions can filter without reading the data. `docs/events.md` is the
//! schema for subscribers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

#[cfg(test)]
use crate::email::Email;
use crate::lifecycle::{Entry, Record};
use crate::token::ActivationRequest;

/// Bumped when a field changes meaning or disappears; new fields do not bump it.
pub const EVENT_SCHEMA_VERSION: &str = "1";

/// Every kind of event. Subscribers match it exhaustively, so that a new kind is a compile
/// error in each of them until it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    RequestActivation,
    ActivationApproved,
    ActivationSelfApproved,
    ApprovalRecorded,
    RequestDenied,
    RequestWithdrawn,
    ActivationEnded,
    ActivationRevoked,
    ActivationFailed,
    ActivationExternallyModified,
    ExtensionRequested,
    ActivationExtended,
    ExtensionFailed,
    /// Emergency access was granted at once; its review is pending.
    BreakGlassActivated,
    /// A reviewer ratified emergency access (`review` says whether the quorum is complete).
    RatificationRecorded,
    /// Emergency access was rejected, and revoked if it was still live.
    BreakGlassRejected,
    /// Emergency access was not ratified by its deadline: administrators are told.
    BreakGlassUnreviewed,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::RequestActivation,
        Kind::ActivationApproved,
        Kind::ActivationSelfApproved,
        Kind::ApprovalRecorded,
        Kind::RequestDenied,
        Kind::RequestWithdrawn,
        Kind::ActivationEnded,
        Kind::ActivationRevoked,
        Kind::ActivationFailed,
        Kind::ActivationExternallyModified,
        Kind::ExtensionRequested,
        Kind::ActivationExtended,
        Kind::ExtensionFailed,
        Kind::BreakGlassActivated,
        Kind::RatificationRecorded,
        Kind::BreakGlassRejected,
        Kind::BreakGlassUnreviewed,
    ];

    /// The `type` on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestActivation => "RequestActivation",
            Kind::ActivationApproved => "ActivationApproved",
            Kind::ActivationSelfApproved => "ActivationSelfApproved",
            Kind::ApprovalRecorded => "ApprovalRecorded",
            Kind::RequestDenied => "RequestDenied",
            Kind::RequestWithdrawn => "RequestWithdrawn",
            Kind::ActivationEnded => "ActivationEnded",
            Kind::ActivationRevoked => "ActivationRevoked",
            Kind::ActivationFailed => "ActivationFailed",
            Kind::ActivationExternallyModified => "ActivationExternallyModified",
            Kind::ExtensionRequested => "ExtensionRequested",
            Kind::ActivationExtended => "ActivationExtended",
            Kind::ExtensionFailed => "ExtensionFailed",
            Kind::BreakGlassActivated => "BreakGlassActivated",
            Kind::RatificationRecorded => "RatificationRecorded",
            Kind::BreakGlassRejected => "BreakGlassRejected",
            Kind::BreakGlassUnreviewed => "BreakGlassUnreviewed",
        }
    }

    /// The kind an event's `type` names; `None` for one this version does not know.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One event: JSON data plus the message attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub data: Value,
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    fn new(kind: Kind, attributes: Value) -> Event {
        Event {
            data: json!({"type": kind.name(), "attributes": attributes}),
            attributes: BTreeMap::from([
                ("type".to_string(), kind.name().to_string()),
                ("version".to_string(), EVENT_SCHEMA_VERSION.to_string()),
            ]),
        }
    }

    /// The event type, from the attributes.
    pub fn kind(&self) -> &str {
        self.attributes.get("type").map(String::as_str).unwrap_or("")
    }

    /// The kind an event's data names, as a subscriber reads it.
    pub fn kind_of(data: &Value) -> Option<Kind> {
        data["type"].as_str().and_then(Kind::parse)
    }
}

/// A peer-approval request was created; `action_url` opens it for the reviewers.
pub fn request_activation(request: &ActivationRequest, base_url: &str, action_url: &str) -> Event {
    Event::new(
        Kind::RequestActivation,
        json!({
            "activation_id": request.id,
            "beneficiary": request.beneficiary,
            "reviewers": request.reviewers,
            "project_id": request.entitlement.resource().to_string(),
            "role": request.entitlement.role().as_str(),
            "resource_condition": resource_condition(request),
            "start_time": request.window.start().to_string(),
            "end_time": request.window.end().to_string(),
            "request_expiry_time": request.expires.to_string(),
            "justification": request.justification,
            "base_url": base_url,
            "action_url": action_url,
        }),
    )
}

/// The event that tells subscribers about `entry`, just recorded on `record`; `None` for an
/// entry that is announced otherwise (a new request) or at its outcome (a revocation is
/// announced once its binding is gone). Times are the granted ones: narrowed, extended.
pub fn lifecycle_event(record: &Record, entry: &Entry, base_url: &str) -> Option<Event> {
    let closing = || {
        record.timeline.iter().find_map(|e| match e {
            Entry::Revoked { actor, reason, .. } => Some((Kind::ActivationRevoked, Some(actor), reason.clone())),
            Entry::Rejected { actor, reason, .. } => Some((Kind::BreakGlassRejected, Some(actor), reason.clone())),
            Entry::Ended { actor, reason, .. } => Some((Kind::ActivationEnded, Some(actor), reason.clone())),
            Entry::Superseded { by, .. } => {
                Some((Kind::ActivationEnded, Some(&record.beneficiary), format!("superseded by {by}")))
            }
            _ => None,
        })
    };
    let at = crate::timestamp::Timestamp::from_unix_seconds(entry.at())?;
    let (kind, actor, reason) = match entry {
        // An approval recorded after the grant changes nothing: nobody is told twice.
        Entry::Approved { .. } if record.is_activated() => return None,
        Entry::Approved { actor, reason, .. } => (Kind::ApprovalRecorded, Some(actor), reason.clone()),
        Entry::ExtensionApproved { actor, reason, .. } => (Kind::ApprovalRecorded, Some(actor), reason.clone()),
        Entry::Denied { actor, reason, .. } => (Kind::RequestDenied, Some(actor), reason.clone()),
        Entry::Withdrawn { actor, reason, .. } => (Kind::RequestWithdrawn, Some(actor), reason.clone()),
        Entry::Activated { .. } if record.break_glass.is_some() => {
            (Kind::BreakGlassActivated, Some(&record.beneficiary), String::new())
        }
        Entry::Activated { .. } if record.approvals_needed == 0 => (Kind::ActivationSelfApproved, None, String::new()),
        Entry::Activated { .. } => {
            let counted = record.approvers();
            let last = record.timeline.iter().rev().find_map(|e| match e {
                Entry::Approved { actor, .. } if counted.contains(actor) => Some(actor),
                _ => None,
            });
            (Kind::ActivationApproved, last, String::new())
        }
        Entry::ActivationFailed { reason, .. } => (Kind::ActivationFailed, None, reason.clone()),
        Entry::BindingRemoved { .. } => closing()?,
        Entry::ExternallyModified { .. } => (Kind::ActivationExternallyModified, None, String::new()),
        // A self-approved extension is granted at once: its event is the extension's.
        Entry::ExtensionRequested { actor, .. } if record.approvals_needed > 0 => {
            (Kind::ExtensionRequested, Some(actor), String::new())
        }
        Entry::Extended { .. } => (Kind::ActivationExtended, None, String::new()),
        Entry::ExtensionFailed { reason, .. } => (Kind::ExtensionFailed, None, reason.clone()),
        Entry::Ratified { actor, reason, .. } => (Kind::RatificationRecorded, Some(actor), reason.clone()),
        // A rejection that revokes is announced once the binding is gone, as a revocation is.
        Entry::Rejected { .. } if record.state(at) == crate::lifecycle::State::Revoking => return None,
        Entry::Rejected { actor, reason, .. } => (Kind::BreakGlassRejected, Some(actor), reason.clone()),
        Entry::Escalated { .. } => (Kind::BreakGlassUnreviewed, None, String::new()),
        Entry::Requested { .. }
        | Entry::ExtensionRequested { .. }
        | Entry::Revoked { .. }
        | Entry::Ended { .. }
        | Entry::Superseded { .. } => return None,
    };
    let first = record.entitlements.first().and_then(|id| crate::entitlement::EntitlementId::parse(id).ok());
    let roles: Vec<&str> = record.entitlements.iter().filter_map(|id| id.split(':').nth(1)).collect();
    let time = |seconds: i64| crate::timestamp::Timestamp::from_unix_seconds(seconds).map(|t| t.to_string());
    let extension = matches!(entry, Entry::ExtensionApproved { .. });
    let approvers = if extension {
        record.extension_approvers()
    } else if record.break_glass.is_some() {
        record.ratifiers()
    } else {
        record.approvers()
    };
    let extension_end = match entry {
        Entry::ExtensionApproved { .. } | Entry::ExtensionRequested { .. } => record.pending_extension(),
        _ => None,
    };
    let mut event = Event::new(
        kind,
        json!({
            "activation_id": record.id,
            "actor": actor,
            "approver": actor,
            "reason": reason,
            "beneficiary": record.beneficiary,
            "reviewers": record.reviewers,
            "approvers": approvers,
            "approvals": approvers.len(),
            "approvals_needed": record.approvals_needed,
            "project_id": first.as_ref().map(|id| id.resource().to_string()),
            "role": roles.join(", "),
            "roles": roles,
            "resource_condition": first.as_ref().and_then(|id| id.resource_condition().map(|c| c.to_string())).unwrap_or_default(),
            "start_time": time(record.start),
            "end_time": time(record.effective_end()),
            "requested_end_time": time(record.end),
            "extension_end_time": extension_end.and_then(time),
            "superseded_by": record.superseded_by(),
            "justification": record.justification,
            "base_url": base_url,
        }),
    );
    event.data["attributes"]["state"] = json!(record.state(at).name());
    if let (Some(terms), Some(review)) = (record.break_glass, record.review(at)) {
        event.data["attributes"]["break_glass"] = json!({
            "review": review.name(),
            "review_deadline": time(terms.review_deadline),
            "ratifications": record.ratifiers().len(),
        });
    }
    Some(event)
}

fn resource_condition(request: &ActivationRequest) -> String {
    request.entitlement.resource_condition().map(|c| c.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::ActivationWindow;
    use crate::entitlement::EntitlementId;
    use crate::timestamp::Timestamp;

    fn request() -> ActivationRequest {
        let start = Timestamp::from_unix_seconds(1_700_000_000).expect("in range");
        ActivationRequest {
            id: "mpa-abc".into(),
            beneficiary: Email::parse("alice@example.com").expect("email"),
            reviewers: vec![Email::parse("bob@example.com").expect("email")],
            entitlement: EntitlementId::parse("project-1:roles/compute.admin").expect("id"),
            justification: "BUG-12345".into(),
            window: ActivationWindow::new(start, start.plus_seconds(3600)).expect("window"),
            expires: start.plus_seconds(3600),
            approvals_needed: 1,
            approver_reason_required: false,
            review_deadline: None,
        }
    }

    #[test]
    fn request_event_has_the_reference_shape_and_attributes() {
        let event = request_activation(&request(), "https://jit.example.com", "https://jit.example.com/?activation=x");
        assert_eq!(event.kind(), "RequestActivation");
        assert_eq!(event.attributes["version"], "1");
        assert_eq!(event.data["type"], "RequestActivation");
        let attributes = &event.data["attributes"];
        assert_eq!(attributes["beneficiary"], "alice@example.com");
        assert_eq!(attributes["reviewers"], json!(["bob@example.com"]));
        assert_eq!(attributes["start_time"], "2023-11-14T22:13:20Z");
        assert_eq!(attributes["resource_condition"], "");
        assert_eq!(attributes["action_url"], "https://jit.example.com/?activation=x");
    }

    #[test]
    fn a_grant_is_announced_with_its_granted_end_and_a_revocation_once_the_binding_is_gone() {
        let alice = Email::parse("alice@example.com").expect("email");
        let bob = Email::parse("bob@example.com").expect("email");
        let mut record = Record {
            id: "mpa-abc".into(),
            activation_type: crate::condition::ActivationType::Mpa,
            beneficiary: alice.clone(),
            reviewers: vec![bob.clone()],
            entitlements: vec!["project-1:roles/compute.admin".into()],
            justification: "BUG-1".into(),
            start: 1_700_000_000,
            end: 1_700_003_600,
            request_expiry: 1_700_003_600,
            approvals_needed: 1,
            approver_reason_required: false,
            break_glass: None,
            token: None,
            timeline: vec![Entry::Requested { at: 1_700_000_000, actor: alice }],
        };
        let narrowed =
            Entry::Approved { at: 1_700_000_001, actor: bob.clone(), reason: String::new(), end: Some(1_700_000_600) };
        record.timeline.push(narrowed);
        let activated = Entry::Activated { at: 1_700_000_002 };
        record.timeline.push(activated.clone());
        let event = lifecycle_event(&record, &activated, "https://jit.example.com").expect("announced");
        assert_eq!(event.kind(), "ActivationApproved");
        assert_eq!(event.data["attributes"]["approver"], "bob@example.com");
        assert_eq!(event.data["attributes"]["end_time"], "2023-11-14T22:23:20Z", "the narrowed end");
        let revoked = Entry::Revoked { at: 1_700_000_100, actor: bob, reason: "over".into() };
        record.timeline.push(revoked.clone());
        assert_eq!(lifecycle_event(&record, &revoked, ""), None, "not yet: the binding is still there");
        let removed = Entry::BindingRemoved { at: 1_700_000_101 };
        record.timeline.push(removed.clone());
        let event = lifecycle_event(&record, &removed, "").expect("announced");
        assert_eq!((event.kind(), event.data["attributes"]["reason"].as_str()), ("ActivationRevoked", Some("over")));
        assert_eq!(event.data["attributes"]["state"], "REVOKED");
    }
}
