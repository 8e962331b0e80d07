//! Activation events, as published to Pub/Sub for the mailer and other subscribers.
//!
//! The data keeps the reference app's shape, `{"type": T, "attributes": {...}}` with
//! lowercase keys, times as RFC 3339 strings and lists as arrays, so its subscribers carry
//! over. Unlike the reference, the Pub/Sub message also carries attributes `type` and
//! `version`, so subscriptions can filter without reading the data. `docs/events.md` is the
//! schema for subscribers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::activation::Activation;
use crate::email::Email;
use crate::lifecycle::{Entry, Record};
use crate::token::ActivationRequest;

/// Bumped when a field changes meaning or disappears; new fields do not bump it.
pub const EVENT_SCHEMA_VERSION: &str = "1";

pub const REQUEST_ACTIVATION: &str = "RequestActivation";
pub const ACTIVATION_APPROVED: &str = "ActivationApproved";
pub const ACTIVATION_SELF_APPROVED: &str = "ActivationSelfApproved";
pub const APPROVAL_RECORDED: &str = "ApprovalRecorded";
pub const REQUEST_DENIED: &str = "RequestDenied";
pub const REQUEST_WITHDRAWN: &str = "RequestWithdrawn";
pub const ACTIVATION_ENDED: &str = "ActivationEnded";
pub const ACTIVATION_REVOKED: &str = "ActivationRevoked";
pub const ACTIVATION_FAILED: &str = "ActivationFailed";
pub const ACTIVATION_EXTERNALLY_MODIFIED: &str = "ActivationExternallyModified";
pub const EXTENSION_REQUESTED: &str = "ExtensionRequested";
pub const ACTIVATION_EXTENDED: &str = "ActivationExtended";

/// One event: JSON data plus the message attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub data: Value,
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    fn new(kind: &str, attributes: Value) -> Event {
        Event {
            data: json!({"type": kind, "attributes": attributes}),
            attributes: BTreeMap::from([
                ("type".to_string(), kind.to_string()),
                ("version".to_string(), EVENT_SCHEMA_VERSION.to_string()),
            ]),
        }
    }

    /// The event type, from the attributes.
    pub fn kind(&self) -> &str {
        self.attributes.get("type").map(String::as_str).unwrap_or("")
    }
}

/// A peer-approval request was created; `action_url` opens it for the reviewers.
pub fn request_activation(request: &ActivationRequest, base_url: &str, action_url: &str) -> Event {
    Event::new(
        REQUEST_ACTIVATION,
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

/// A request reached its approvals, and the binding was written. `approver` gave the last
/// approval; `approvers` lists them all.
pub fn activation_approved(
    request: &ActivationRequest,
    approver: &Email,
    approvers: &[&Email],
    base_url: &str,
) -> Event {
    Event::new(
        ACTIVATION_APPROVED,
        json!({
            "activation_id": request.id,
            "approver": approver,
            "approvers": approvers,
            "beneficiary": request.beneficiary,
            "reviewers": request.reviewers,
            "project_id": request.entitlement.resource().to_string(),
            "role": request.entitlement.role().as_str(),
            "resource_condition": resource_condition(request),
            "start_time": request.window.start().to_string(),
            "end_time": request.window.end().to_string(),
            "justification": request.justification,
            "base_url": base_url,
        }),
    )
}

/// A user activated one or more roles on one project by self-approval. `role` joins the
/// roles with commas, as in the reference; `roles` lists them.
pub fn activation_self_approved(activation_id: &str, activations: &[Activation], base_url: &str) -> Event {
    let roles: Vec<&str> = activations.iter().map(|a| a.entitlement.role().as_str()).collect();
    let first = activations.first();
    Event::new(
        ACTIVATION_SELF_APPROVED,
        json!({
            "activation_id": activation_id,
            "beneficiary": first.map(|a| a.beneficiary.as_str()),
            "project_id": first.map(|a| a.entitlement.resource().to_string()),
            "role": roles.join(", "),
            "roles": roles,
            "start_time": first.map(|a| a.window.start().to_string()),
            "end_time": first.map(|a| a.window.end().to_string()),
            "justification": first.map(|a| a.justification.as_str()),
            "base_url": base_url,
        }),
    )
}

/// Any other change to a request recorded in the ledger: an approval short of the quorum, a
/// deny, a withdrawal, an early end, a revocation, a failed activation, or a binding changed
/// behind the ledger's back. `None` for entries announced otherwise (requested, activated).
pub fn lifecycle_event(record: &Record, entry: &Entry, base_url: &str) -> Option<Event> {
    let (kind, actor, reason) = match entry {
        Entry::Approved { actor, reason, .. } => (APPROVAL_RECORDED, Some(actor), reason.as_str()),
        Entry::Denied { actor, reason, .. } => (REQUEST_DENIED, Some(actor), reason.as_str()),
        Entry::Withdrawn { actor, reason, .. } => (REQUEST_WITHDRAWN, Some(actor), reason.as_str()),
        Entry::Ended { actor, reason, .. } => (ACTIVATION_ENDED, Some(actor), reason.as_str()),
        Entry::Revoked { actor, reason, .. } => (ACTIVATION_REVOKED, Some(actor), reason.as_str()),
        Entry::ActivationFailed { reason, .. } => (ACTIVATION_FAILED, None, reason.as_str()),
        Entry::ExternallyModified { .. } => (ACTIVATION_EXTERNALLY_MODIFIED, None, ""),
        Entry::ExtensionRequested { actor, .. } => (EXTENSION_REQUESTED, Some(actor), ""),
        Entry::Extended { .. } => (ACTIVATION_EXTENDED, None, ""),
        Entry::Requested { .. } | Entry::Activated { .. } => return None,
    };
    let first = record.entitlements.first().and_then(|id| crate::entitlement::EntitlementId::parse(id).ok());
    let roles: Vec<&str> = record.entitlements.iter().filter_map(|id| id.split(':').nth(1)).collect();
    let time = |seconds: i64| crate::timestamp::Timestamp::from_unix_seconds(seconds).map(|t| t.to_string());
    Some(Event::new(
        kind,
        json!({
            "activation_id": record.id,
            "actor": actor,
            "reason": reason,
            "beneficiary": record.beneficiary,
            "reviewers": record.reviewers,
            "approvers": record.approvers(),
            "approvals": record.approvers().len(),
            "approvals_needed": record.approvals_needed,
            "project_id": first.as_ref().map(|id| id.resource().to_string()),
            "role": roles.join(", "),
            "resource_condition": first.as_ref().and_then(|id| id.resource_condition().map(|c| c.to_string())).unwrap_or_default(),
            "start_time": time(record.start),
            "end_time": time(record.effective_end()),
            "requested_end_time": time(record.end),
            "extension_end_time": record.pending_extension().and_then(|(_, end)| time(end)),
            "justification": record.justification,
            "base_url": base_url,
        }),
    ))
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
    fn approved_event_names_the_approver() {
        let bob = Email::parse("bob@example.com").expect("email");
        let event = activation_approved(&request(), &bob, &[&bob], "https://jit.example.com");
        assert_eq!(event.kind(), "ActivationApproved");
        assert_eq!(event.data["attributes"]["approver"], "bob@example.com");
    }
}
