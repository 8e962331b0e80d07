//! Carrying out what the ledger records: writing a decided activation's binding and recording
//! the outcome, removing a revoked or ended grant's binding, and reconciling a request with
//! IAM. Every step can be repeated: whoever touches a request next, or the sweeper, completes
//! what a crash left half-done.

use std::sync::Arc;

use crate::activation::{Activation, ActivationBinding, ActivationWindow, Approval};
use crate::email::Email;
use crate::entitlement::EntitlementId;
use crate::event;
use crate::gcp::GcpError;
use crate::gcp::events::{EventPublisher, publish_or_log};
use crate::gcp::iam::{ActivationWrite, IamWriter};
use crate::gcp::ledger::{Ledger, Stored};
use crate::justification::JustificationPolicy;
use crate::lifecycle::{Entry, Record, State};
use crate::timestamp::Timestamp;

#[derive(Debug, Clone)]
pub struct Grants {
    pub ledger: Ledger,
    pub writer: IamWriter,
    pub publisher: Arc<dyn EventPublisher>,
    pub base_url: String,
}

/// What completing an activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// This call wrote the binding and recorded `ACTIVATED`.
    Activated(Stored),
    /// Someone else had completed it already.
    AlreadyDone(Stored),
    /// Google refused the binding for good; `ACTIVATION_FAILED` is recorded.
    Failed(Stored),
}

impl Completion {
    pub fn stored(&self) -> &Stored {
        match self {
            Completion::Activated(s) | Completion::AlreadyDone(s) | Completion::Failed(s) => s,
        }
    }
}

/// The bindings a record grants: one per entitlement, with the record's window.
pub fn activations(record: &Record) -> Result<Vec<Activation>, GcpError> {
    let invalid = |what: String| GcpError::Other(format!("request {}: {what}", record.id));
    let time = |s: i64| Timestamp::from_unix_seconds(s).ok_or_else(|| invalid("a time is out of range".into()));
    let window = ActivationWindow::new(time(record.start)?, time(record.effective_end())?)
        .map_err(|e| invalid(e.to_string()))?;
    // The justification was checked when the request was made; it goes to the description only.
    let policy = JustificationPolicy::new(".*", "").map_err(|e| invalid(e.to_string()))?;
    let justification = policy.check(&record.justification).map_err(|e| invalid(e.to_string()))?;
    let approval = match record.approvers().into_iter().next() {
        Some(first) => Approval::ApprovedBy(first.clone()),
        None => Approval::SelfApproved,
    };
    record
        .entitlements
        .iter()
        .map(|text| {
            Ok(Activation {
                beneficiary: record.beneficiary.clone(),
                entitlement: EntitlementId::parse(text).map_err(|e| invalid(e.to_string()))?,
                window,
                approval: approval.clone(),
                justification: justification.clone(),
            })
        })
        .collect()
}

fn grant_of(activation: &Activation) -> ActivationBinding {
    ActivationBinding {
        member: activation.beneficiary.clone(),
        role: activation.entitlement.role().clone(),
        resource_condition: activation.entitlement.resource_condition().cloned(),
        window: activation.window,
    }
}

impl Grants {
    /// Writes the binding of a request the ledger says is `ACTIVATING`, then records
    /// `ACTIVATED`. A binding Google refuses for good is recorded as `ACTIVATION_FAILED`; a
    /// passing failure leaves the request `ACTIVATING` for the next attempt.
    pub async fn complete_activation(&self, stored: Stored) -> Result<Completion, GcpError> {
        if stored.record.state(Timestamp::now()) != State::Activating {
            return Ok(Completion::AlreadyDone(stored));
        }
        let record = &stored.record;
        let activations = activations(record)?;
        let reason = match record.approvers().into_iter().map(|a| a.as_str()).collect::<Vec<_>>() {
            approvers if approvers.is_empty() => format!("Self-approved, justification: {}", record.justification),
            approvers => format!("Approved by {}, justification: {}", approvers.join(", "), record.justification),
        };
        let written = self.writer.activate_all(&activations, &reason).await;
        let outcome = match &written {
            Ok(_) => Entry::Activated { at: Timestamp::now().unix_seconds() },
            Err(GcpError::Denied(cause) | GcpError::InvalidArgument(cause) | GcpError::NotFound(cause)) => {
                Entry::ActivationFailed { at: Timestamp::now().unix_seconds(), reason: cause.clone() }
            }
            Err(other) => return Err(other.clone()),
        };
        let mut recorded_here = false;
        let stored = self
            .ledger
            .modify_from::<GcpError>(stored.clone(), |current| {
                if current.state(Timestamp::now()) != State::Activating {
                    return Ok(None);
                }
                let mut next = current.clone();
                next.timeline.push(outcome.clone());
                recorded_here = true;
                Ok(Some(next))
            })
            .await?
            .unwrap_or(stored.clone());
        if let Err(error) = written {
            tracing::error!(activation_id = %record.id, %error, "the binding was refused; the request failed");
            self.announce(&stored.record, &outcome).await;
            return Ok(Completion::Failed(stored));
        }
        if recorded_here && written != Ok(ActivationWrite::AlreadyPresent) {
            return Ok(Completion::Activated(stored));
        }
        Ok(Completion::AlreadyDone(stored))
    }

    /// Extends a grant whose extension has its quorum: writes the binding with the new end
    /// (replacing the old one, so there is no gap), then records `EXTENDED`.
    pub async fn complete_extension(&self, stored: Stored) -> Result<Stored, GcpError> {
        let Some(end) = stored.record.extension_ready() else {
            return Ok(stored);
        };
        let mut extended = stored.record.clone();
        extended.timeline.push(Entry::Extended { at: Timestamp::now().unix_seconds(), end });
        let reason =
            format!("Extended until {}", Timestamp::from_unix_seconds(end).map(|t| t.to_string()).unwrap_or_default());
        self.writer.activate_all(&activations(&extended)?, &reason).await?;
        let written = self
            .ledger
            .modify::<GcpError>(&stored.record.id, |current| {
                if current.extension_ready() != Some(end) {
                    return Ok(None);
                }
                let mut next = current.clone();
                next.timeline.push(Entry::Extended { at: Timestamp::now().unix_seconds(), end });
                Ok(Some(next))
            })
            .await?
            .unwrap_or(stored);
        if let Some(entry) = written.record.timeline.last().filter(|e| matches!(e, Entry::Extended { .. })) {
            self.announce(&written.record, entry).await;
        }
        Ok(written)
    }

    /// Removes the binding of a grant that was revoked or ended. Gone already is fine.
    pub async fn remove_binding(&self, record: &Record, reason: &str) -> Result<usize, GcpError> {
        let mut removed = 0;
        for activation in activations(record)? {
            let sweep =
                self.writer.deactivate(activation.entitlement.resource(), &grant_of(&activation), reason).await?;
            removed += sweep.removed.len();
        }
        Ok(removed)
    }

    /// Whether every binding of an active grant is still in IAM.
    pub async fn bindings_present(&self, record: &Record) -> Result<bool, GcpError> {
        for activation in activations(record)? {
            let present = self.writer.activations(activation.entitlement.resource()).await?;
            if !present.contains(&grant_of(&activation)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Publishes the event of a recorded entry; a failure is logged, never returned: the
    /// decision stands either way.
    pub async fn announce(&self, record: &Record, entry: &Entry) -> bool {
        match event::lifecycle_event(record, entry, &self.base_url) {
            Some(event) => publish_or_log(self.publisher.as_ref(), &event).await.is_ok(),
            None => true,
        }
    }
}

/// Whether `user` is named in `ADMINISTRATORS`, directly or through one of `groups`.
pub fn is_administrator(administrators: &[String], user: &Email, groups: &std::collections::BTreeSet<String>) -> bool {
    administrators.iter().any(|member| {
        member == &user.iam_member() || member.strip_prefix("group:").is_some_and(|group| groups.contains(group))
    })
}
