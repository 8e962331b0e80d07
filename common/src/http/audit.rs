//! One audit entry per decision, with labels an operator can filter on in Cloud Logging
//! (`labels.event="api.activateRole"`, `labels.outcome="refused"`, `labels.user=…`).

use crate::http::ApiError;

/// What was decided, for whom and why.
#[derive(Debug, Clone, Default)]
pub struct Decision<'a> {
    /// `api.activateRole`, `api.requestRole`, `api.approveRole`, …
    pub event: &'static str,
    pub user: &'a str,
    pub project: &'a str,
    pub roles: String,
    pub justification: &'a str,
    pub reviewers: String,
    pub approver: &'a str,
    pub activation_id: &'a str,
}

/// Logs the decision with its outcome: `granted`, `requested`, `refused` (with the refusal's
/// code) or `failed` (a backend error).
pub fn record<T>(decision: &Decision<'_>, result: &Result<T, ApiError>, success: &'static str) {
    let (outcome, code) = match result {
        Ok(_) => (success, ""),
        Err(error) if error.status().is_client_error() => ("refused", error.code()),
        Err(error) => ("failed", error.code()),
    };
    tracing::info!(
        audit = true,
        labels.event = decision.event,
        labels.outcome = outcome,
        labels.code = code,
        labels.user = decision.user,
        labels.project_id = decision.project,
        labels.role = %decision.roles,
        labels.justification = decision.justification,
        labels.reviewers = %decision.reviewers,
        labels.approver = decision.approver,
        labels.activation_id = decision.activation_id,
        "{} {outcome}",
        decision.event
    );
}

/// The audit entry of a decision on an existing request (`api.approveRole`,
/// `chat.denyRole`, `api.revokeRole`, …), by whoever took it.
pub fn request_decision<T>(event: &'static str, caller: &crate::email::Email, id: &str, result: &Result<T, ApiError>) {
    let decision = Decision { event, approver: caller.as_str(), activation_id: id, ..Decision::default() };
    record(&decision, result, "recorded");
}
