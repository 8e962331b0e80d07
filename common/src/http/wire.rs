//! JSON shapes shared by the functions, as the reference app's API has them: users as
//! `{"email"}`, times in epoch seconds.

use serde::Serialize;

use crate::activation::{Activation, ActivationWindow, WindowStatus};
use crate::email::Email;
use crate::entitlement::EntitlementId;
use crate::lifecycle::{Entry, Record};
use crate::timestamp::Timestamp;
use crate::token::ActivationRequest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserJson {
    pub email: String,
}

impl From<&Email> for UserJson {
    fn from(email: &Email) -> UserJson {
        UserJson { email: email.to_string() }
    }
}

/// The answer to self-activation, a request, and approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationResponse {
    pub beneficiary: UserJson,
    pub reviewers: Vec<UserJson>,
    pub is_beneficiary: bool,
    pub is_reviewer: bool,
    pub justification: String,
    pub entitlements: Vec<ActivatedEntitlementJson>,
    /// Peer-approval requests only: when the request can no longer be approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_expiry_time: Option<i64>,
    /// A note for the person, e.g. that the request had already been approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Emergency access: where its review stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivatedEntitlementJson {
    pub activation_id: String,
    pub project_id: String,
    pub id: String,
    pub name: String,
    pub resource_condition: Option<String>,
    /// `ACTIVE`, `ACTIVATION_PENDING` or `EXPIRED`.
    pub status: &'static str,
    pub start_time: i64,
    pub end_time: i64,
}

impl ActivatedEntitlementJson {
    pub fn new(
        activation_id: &str,
        id: &EntitlementId,
        window: &ActivationWindow,
        status: &'static str,
    ) -> ActivatedEntitlementJson {
        ActivatedEntitlementJson {
            activation_id: activation_id.to_string(),
            project_id: id.resource().to_string(),
            id: id.to_string(),
            name: id.role().to_string(),
            resource_condition: id.resource_condition().map(|c| c.to_string()),
            status,
            start_time: window.start().unix_seconds(),
            end_time: window.end().unix_seconds(),
        }
    }
}

impl ActivationResponse {
    /// Self-activation: active at once.
    pub fn self_approved(activation_id: &str, activations: &[Activation]) -> ActivationResponse {
        let first = activations.first();
        ActivationResponse {
            beneficiary: first.map(|a| UserJson::from(&a.beneficiary)).unwrap_or(UserJson { email: String::new() }),
            reviewers: Vec::new(),
            is_beneficiary: true,
            is_reviewer: false,
            justification: first.map(|a| a.justification.to_string()).unwrap_or_default(),
            entitlements: activations
                .iter()
                .map(|a| ActivatedEntitlementJson::new(activation_id, &a.entitlement, &a.window, "ACTIVE"))
                .collect(),
            request_expiry_time: None,
            message: None,
            break_glass: None,
        }
    }

    /// A peer-approval request, as seen by `caller`. `status` is `ACTIVATION_PENDING` or
    /// `ACTIVE`; an ended window shows as `EXPIRED` whatever it was.
    pub fn request(
        request: &ActivationRequest,
        caller: &Email,
        status: &'static str,
        now: Timestamp,
    ) -> ActivationResponse {
        let status = if request.window.status(now) == WindowStatus::Ended { "EXPIRED" } else { status };
        ActivationResponse {
            beneficiary: UserJson::from(&request.beneficiary),
            reviewers: request.reviewers.iter().map(UserJson::from).collect(),
            is_beneficiary: &request.beneficiary == caller,
            is_reviewer: request.reviewers.contains(caller),
            justification: request.justification.clone(),
            entitlements: vec![ActivatedEntitlementJson::new(
                &request.id,
                &request.entitlement,
                &request.window,
                status,
            )],
            request_expiry_time: Some(request.expires.unix_seconds()),
            message: None,
            break_glass: None,
        }
    }
}

/// A request from the ledger, as its parties see it: what was asked, its true state, the
/// approvals so far and needed, the timeline, and what the viewer may do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestJson {
    pub id: String,
    pub state: &'static str,
    pub activation_type: &'static str,
    pub beneficiary: UserJson,
    pub reviewers: Vec<UserJson>,
    pub entitlements: Vec<EntitlementRefJson>,
    pub justification: String,
    pub start_time: i64,
    /// When the access ends: as asked, narrowed by approvers, or extended.
    pub end_time: i64,
    pub requested_end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_extension_end_time: Option<i64>,
    pub request_expiry_time: i64,
    pub approvals: Vec<ApprovalJson>,
    pub approvals_needed: u32,
    pub approver_reason_required: bool,
    /// Approvals of the pending extension.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extension_approvals: Vec<ApprovalJson>,
    pub timeline: Vec<TimelineJson>,
    /// `approve`, `deny`, `withdraw`, `revoke`, `extend`, `approve-extension`: what the
    /// viewer may do now.
    pub actions: Vec<&'static str>,
    /// The grant's binding was changed or removed outside this system.
    pub externally_modified: bool,
    /// The self-activation that replaced this grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Emergency access: where its after-the-fact review stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassJson>,
    /// A note for the viewer about what they just did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementRefJson {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub resource_condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassJson {
    /// `PENDING`, `RATIFIED`, `REJECTED` or `UNREVIEWED`.
    pub review: &'static str,
    pub review_deadline: i64,
    pub ratifications: Vec<ApprovalJson>,
    /// Ratifications the quorum needs.
    pub ratifications_needed: u32,
    /// The deadline passed unreviewed and administrators were told.
    pub escalated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalJson {
    pub email: String,
    pub time: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub fn break_glass_json(record: &Record, now: Timestamp) -> Option<BreakGlassJson> {
    let terms = record.break_glass?;
    let counted = record.ratifiers();
    let mut seen = std::collections::BTreeSet::new();
    let ratifications = record
        .timeline
        .iter()
        .filter_map(|entry| match entry {
            Entry::Ratified { at, actor, reason } if counted.contains(actor) && seen.insert(actor) => {
                Some(ApprovalJson { email: actor.to_string(), time: *at, reason: reason.clone() })
            }
            _ => None,
        })
        .collect();
    Some(BreakGlassJson {
        review: record.review(now)?.name(),
        review_deadline: terms.review_deadline,
        ratifications,
        ratifications_needed: record.approvals_needed,
        escalated: record.escalated(),
    })
}

impl RequestJson {
    pub fn new(record: &Record, now: Timestamp, actions: Vec<&'static str>) -> RequestJson {
        let entitlements = record
            .entitlements
            .iter()
            .map(|text| match EntitlementId::parse(text) {
                Ok(id) => EntitlementRefJson {
                    id: id.to_string(),
                    project_id: id.resource().to_string(),
                    name: id.role().to_string(),
                    resource_condition: id.resource_condition().map(|c| c.to_string()),
                },
                Err(_) => EntitlementRefJson {
                    id: text.clone(),
                    project_id: String::new(),
                    name: String::new(),
                    resource_condition: None,
                },
            })
            .collect();
        let counted = record.approvers();
        let approvals = record
            .timeline
            .iter()
            .filter_map(|entry| match entry {
                Entry::Approved { at, actor, reason, .. } if counted.contains(actor) => {
                    Some(ApprovalJson { email: actor.to_string(), time: *at, reason: reason.clone() })
                }
                _ => None,
            })
            .collect();
        // The pending extension's round starts at its request.
        let extension_counted = record.extension_approvers();
        let round_start = match record.pending_extension() {
            Some(_) => record.timeline.iter().rposition(|e| matches!(e, Entry::ExtensionRequested { .. })).unwrap_or(0),
            None => record.timeline.len(),
        };
        let extension_approvals = record.timeline[round_start..]
            .iter()
            .filter_map(|entry| match entry {
                Entry::ExtensionApproved { at, actor, reason, .. } if extension_counted.contains(actor) => {
                    Some(ApprovalJson { email: actor.to_string(), time: *at, reason: reason.clone() })
                }
                _ => None,
            })
            .collect();
        let timeline = record
            .timeline
            .iter()
            .map(|entry| {
                let json = serde_json::to_value(entry).unwrap_or_default();
                TimelineJson {
                    kind: json["type"].as_str().unwrap_or_default().to_string(),
                    time: entry.at(),
                    actor: json["actor"].as_str().map(str::to_string),
                    reason: json["reason"].as_str().filter(|r| !r.is_empty()).map(str::to_string),
                }
            })
            .collect();
        RequestJson {
            id: record.id.clone(),
            state: record.state(now).name(),
            activation_type: match record.activation_type {
                crate::condition::ActivationType::Jit => "JIT",
                crate::condition::ActivationType::Mpa => "MPA",
            },
            beneficiary: UserJson::from(&record.beneficiary),
            reviewers: record.reviewers.iter().map(UserJson::from).collect(),
            entitlements,
            justification: record.justification.clone(),
            start_time: record.start,
            end_time: record.effective_end(),
            requested_end_time: record.end,
            pending_extension_end_time: record.pending_extension(),
            request_expiry_time: record.request_expiry,
            approvals,
            approvals_needed: record.approvals_needed,
            approver_reason_required: record.approver_reason_required,
            extension_approvals,
            timeline,
            actions,
            externally_modified: record.externally_modified(),
            superseded_by: record.superseded_by().map(str::to_string),
            break_glass: break_glass_json(record, now),
            message: None,
        }
    }

    /// Emergency access awaiting the review of `viewer`: listed, not yet ratified by them.
    pub fn awaits_review_by(record: &Record, viewer: &Email, now: Timestamp) -> bool {
        record.review(now) == Some(crate::lifecycle::Review::Pending)
            && record.reviewers.contains(viewer)
            && &record.beneficiary != viewer
            && !record.ratifiers().contains(viewer)
    }

    pub fn with_message(mut self, message: Option<String>) -> RequestJson {
        self.message = message;
        self
    }
}
