//! A request's life, as the request ledger records it: an append-only timeline of what
//! happened, the state that follows from it (a pure function of the timeline and `now`, with
//! Privileged Access Manager's names), the decisions that may add to it, and what IAM must hold
//! for it.
//!
//! Order of work, so that nothing is lost or half-done: a decision is recorded first, then IAM
//! is changed, then the outcome is recorded. Every change of IAM has a state that says it is
//! still to do (`ACTIVATING`, `EXTENDING`, `REVOKING`, `ENDING`), and the state only moves on
//! when the outcome is recorded, so a crash, a timeout or a Google outage in between leaves a
//! request that whoever touches it next, or the sweeper, completes. [`next_step`] is that
//! plan, one step at a time; the door (`common::door`) carries the steps out. What may be
//! done to a request, and by whom, is decided in [`crate::rules`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::condition::ActivationType;
use crate::email::Email;
use crate::timestamp::Timestamp;

/// One thing that happened to a request. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", rename_all_fields = "camelCase")]
pub enum Entry {
    Requested {
        at: i64,
        actor: Email,
    },
    /// An approval of the request as asked. `end`: the approver narrowed the window to end
    /// then (never later than asked).
    Approved {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<i64>,
    },
    Denied {
        at: i64,
        actor: Email,
        reason: String,
    },
    Withdrawn {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
    },
    /// The binding is written: outcome of `ACTIVATING`.
    Activated {
        at: i64,
    },
    ActivationFailed {
        at: i64,
        reason: String,
    },
    /// The decision to revoke: `REVOKING` until `BINDING_REMOVED`.
    Revoked {
        at: i64,
        actor: Email,
        reason: String,
    },
    /// The beneficiary ended the grant early: `ENDING` until `BINDING_REMOVED`.
    Ended {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
    },
    /// A self-activation of the same roles, starting now, replaces this grant's binding with
    /// its own in one write: `ENDING` until `BINDING_REMOVED`.
    Superseded {
        at: i64,
        by: String,
    },
    /// The grant's bindings are gone from IAM: outcome of `REVOKING` and `ENDING`.
    BindingRemoved {
        at: i64,
    },
    /// The grant's binding was found removed behind the ledger's back.
    ExternallyModified {
        at: i64,
    },
    /// The requester asked for the grant to last until `end`; peer approval needs a new quorum.
    ExtensionRequested {
        at: i64,
        actor: Email,
        end: i64,
    },
    /// A reviewer approved the pending extension, until `end` (at most what was asked).
    ExtensionApproved {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
        end: i64,
    },
    /// The grant now lasts until `end`, without a gap: outcome of `EXTENDING`.
    Extended {
        at: i64,
        end: i64,
    },
    /// The extension could not be granted (eligibility lost, or Google refused); the grant
    /// runs on until its earlier end.
    ExtensionFailed {
        at: i64,
        reason: String,
    },
    /// A reviewer ratified an emergency grant after the fact.
    Ratified {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
    },
    /// A reviewer or an administrator rejected an emergency grant: a live one is revoked
    /// (`REVOKING` until `BINDING_REMOVED`).
    Rejected {
        at: i64,
        actor: Email,
        reason: String,
    },
    /// An emergency grant's review deadline passed without its quorum: administrators told.
    Escalated {
        at: i64,
    },
}

impl Entry {
    pub fn at(&self) -> i64 {
        match self {
            Entry::Requested { at, .. }
            | Entry::Approved { at, .. }
            | Entry::Denied { at, .. }
            | Entry::Withdrawn { at, .. }
            | Entry::Activated { at }
            | Entry::ActivationFailed { at, .. }
            | Entry::Revoked { at, .. }
            | Entry::Ended { at, .. }
            | Entry::Superseded { at, .. }
            | Entry::BindingRemoved { at }
            | Entry::ExternallyModified { at }
            | Entry::ExtensionRequested { at, .. }
            | Entry::ExtensionApproved { at, .. }
            | Entry::Extended { at, .. }
            | Entry::ExtensionFailed { at, .. }
            | Entry::Ratified { at, .. }
            | Entry::Rejected { at, .. }
            | Entry::Escalated { at } => *at,
        }
    }

    /// The decision that closes the request, if this entry is one.
    fn closing(&self) -> Option<Closing> {
        match self {
            Entry::Denied { .. } => Some(Closing::Denied),
            Entry::Withdrawn { .. } => Some(Closing::Withdrawn),
            Entry::ActivationFailed { .. } => Some(Closing::Failed),
            Entry::Revoked { .. } => Some(Closing::Revoked),
            Entry::Ended { .. } | Entry::Superseded { .. } => Some(Closing::Ended),
            _ => None,
        }
    }
}

/// One extension round, see [`Record::extension_rounds`].
#[derive(Debug)]
struct Round<'a> {
    asked: i64,
    approvers: BTreeSet<&'a Email>,
    ready_end: i64,
    granted: Option<i64>,
    settled: Option<usize>,
}

impl Round<'_> {
    fn has_quorum(&self, needed: u32) -> bool {
        self.approvers.len() as u32 >= needed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Denied,
    Withdrawn,
    Failed,
    Revoked,
    Ended,
}

/// What makes a request an emergency grant, signed in its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// Unix seconds: ratifications count until then.
    pub review_deadline: i64,
}

/// Where the after-the-fact review of an emergency grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Review {
    Pending,
    Ratified,
    Rejected,
    /// The deadline passed without the quorum.
    Unreviewed,
}

impl Review {
    pub fn name(self) -> &'static str {
        match self {
            Review::Pending => "PENDING",
            Review::Ratified => "RATIFIED",
            Review::Rejected => "REJECTED",
            Review::Unreviewed => "UNREVIEWED",
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    ApprovalAwaited,
    /// Approved by enough reviewers (or self-approved); the binding is being written.
    Activating,
    /// Granted, with a window that starts later.
    Scheduled,
    Active,
    /// An extension has its approvals; the longer binding is being written.
    Extending,
    /// Revoked; the binding is being removed.
    Revoking,
    /// Ended early or superseded; the binding is being removed.
    Ending,
    Denied,
    Withdrawn,
    Revoked,
    Expired,
    Ended,
    ActivationFailed,
}

impl State {
    /// Nothing more can happen to the request.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Denied | State::Withdrawn | State::Revoked | State::Expired | State::Ended | State::ActivationFailed
        )
    }

    /// The request holds, or is about to hold, a binding.
    pub fn is_live(self) -> bool {
        matches!(self, State::Activating | State::Scheduled | State::Active | State::Extending)
    }

    pub fn name(self) -> &'static str {
        match self {
            State::ApprovalAwaited => "APPROVAL_AWAITED",
            State::Activating => "ACTIVATING",
            State::Scheduled => "SCHEDULED",
            State::Active => "ACTIVE",
            State::Extending => "EXTENDING",
            State::Revoking => "REVOKING",
            State::Ending => "ENDING",
            State::Denied => "DENIED",
            State::Withdrawn => "WITHDRAWN",
            State::Revoked => "REVOKED",
            State::Expired => "EXPIRED",
            State::Ended => "ENDED",
            State::ActivationFailed => "ACTIVATION_FAILED",
        }
    }
}

/// A request as the ledger holds it: what was asked, and what happened since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `mpa-…` (peer approval) or `jit-…` (self-activation); the document's ID.
    pub id: String,
    pub activation_type: ActivationType,
    pub beneficiary: Email,
    /// Who was asked to approve (peer approval only).
    #[serde(default)]
    pub reviewers: Vec<Email>,
    /// Entitlement IDs, all on one resource: one for peer approval, one or more for a
    /// self-activation.
    pub entitlements: Vec<String>,
    pub justification: String,
    /// The activation window, Unix seconds.
    pub start: i64,
    pub end: i64,
    /// Until when the request can be approved.
    pub request_expiry: i64,
    /// Distinct approvals needed (0 for a self-activation).
    pub approvals_needed: u32,
    /// Approvers must give a reason.
    #[serde(default)]
    pub approver_reason_required: bool,
    /// An emergency grant: written at once, ratified after the fact by `approvals_needed` of
    /// the reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// The signed activation token: the request's content for peer approval, so a document
    /// written by anyone else cannot invent a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub timeline: Vec<Entry>,
}

impl Record {
    /// The record of a signed peer-approval (or emergency) request, as it is created: the one
    /// mapping from a request to its record, also what a stored record is checked against.
    pub fn from_request(request: &crate::token::ActivationRequest, token: &str, now: Timestamp) -> Record {
        Record {
            id: request.id.clone(),
            activation_type: ActivationType::Mpa,
            beneficiary: request.beneficiary.clone(),
            reviewers: request.reviewers.clone(),
            entitlements: vec![request.entitlement.to_string()],
            justification: request.justification.clone(),
            start: request.window.start().unix_seconds(),
            end: request.window.end().unix_seconds(),
            request_expiry: request.expires.unix_seconds(),
            approvals_needed: request.approvals_needed,
            approver_reason_required: request.approver_reason_required,
            break_glass: request
                .review_deadline
                .map(|deadline| BreakGlass { review_deadline: deadline.unix_seconds() }),
            token: Some(token.to_string()),
            timeline: vec![Entry::Requested { at: now.unix_seconds(), actor: request.beneficiary.clone() }],
        }
    }

    /// Whether `who` approves this request: listed as a reviewer and not the beneficiary. An
    /// approval in the timeline by anyone else counts for nothing.
    fn counts(&self, who: &Email) -> bool {
        who != &self.beneficiary && self.reviewers.contains(who)
    }

    /// The distinct listed reviewers who approved the request as asked.
    pub fn approvers(&self) -> BTreeSet<&Email> {
        self.timeline
            .iter()
            .filter_map(|entry| match entry {
                Entry::Approved { actor, .. } if self.counts(actor) => Some(actor),
                _ => None,
            })
            .collect()
    }

    /// Where the grant was written: the first `ACTIVATED` that follows its quorum (an
    /// emergency grant needs none before). One without it (a document writer's) counts for
    /// nothing.
    fn first_activation(&self) -> Option<usize> {
        let mut approvers = BTreeSet::new();
        for (index, entry) in self.timeline.iter().enumerate() {
            match entry {
                Entry::Approved { actor, .. } if self.counts(actor) => {
                    approvers.insert(actor);
                }
                Entry::Activated { .. } if self.break_glass.is_some() => return Some(index),
                Entry::Activated { .. } if approvers.len() as u32 >= self.approvals_needed => return Some(index),
                _ => {}
            }
        }
        None
    }

    /// Whether the grant may be written: its quorum approved, or it is an emergency grant.
    fn may_be_granted(&self) -> bool {
        self.break_glass.is_some() || self.approvers().len() as u32 >= self.approvals_needed
    }

    /// The distinct listed reviewers who ratified an emergency grant in time, up to its
    /// review's decision.
    pub fn ratifiers(&self) -> BTreeSet<&Email> {
        self.review_walk().map(|(ratifiers, _)| ratifiers).unwrap_or_default()
    }

    /// Where an emergency grant's review stands at `now` (`None`: not an emergency grant).
    pub fn review(&self, now: Timestamp) -> Option<Review> {
        let terms = self.break_glass?;
        let (_, decided) = self.review_walk()?;
        let waiting = if now.unix_seconds() >= terms.review_deadline { Review::Unreviewed } else { Review::Pending };
        Some(decided.unwrap_or(waiting))
    }

    /// The review's one reading of the timeline: the ratifications that count (a listed
    /// reviewer's, other than the beneficiary's, before the deadline) and the first decision
    /// made in time, if any: the quorum's ratification, or a rejection before it.
    fn review_walk(&self) -> Option<(BTreeSet<&Email>, Option<Review>)> {
        let terms = self.break_glass?;
        let mut ratifiers = BTreeSet::new();
        for entry in &self.timeline {
            match entry {
                Entry::Ratified { at, actor, .. } if self.counts(actor) && *at < terms.review_deadline => {
                    ratifiers.insert(actor);
                    if ratifiers.len() as u32 >= self.approvals_needed {
                        return Some((ratifiers, Some(Review::Ratified)));
                    }
                }
                Entry::Rejected { at, .. } if *at < terms.review_deadline => {
                    return Some((ratifiers, Some(Review::Rejected)));
                }
                _ => {}
            }
        }
        Some((ratifiers, None))
    }

    /// Whether an unreviewed emergency grant was escalated already.
    pub fn escalated(&self) -> bool {
        self.timeline.iter().any(|entry| matches!(entry, Entry::Escalated { .. }))
    }

    /// Whether anything is still to happen to the request: its state is not final, or an
    /// emergency grant still awaits its review or its escalation. The sweeper visits these.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let reviewing = match self.review(now) {
            Some(Review::Pending) => true,
            Some(Review::Unreviewed) => !self.escalated(),
            _ => false,
        };
        !self.state(now).is_terminal() || reviewing
    }

    /// The first entry that closes the request, and how. A rejection closes a grant it found
    /// live, as a revocation does; one after the grant ended changes only the review.
    fn closing(&self) -> Option<(usize, Closing)> {
        self.timeline.iter().enumerate().find_map(|(index, entry)| match entry {
            Entry::Rejected { at, .. } if self.break_glass.is_some() && *at < self.effective_end() => {
                Some((index, Closing::Revoked))
            }
            entry => entry.closing().map(|closing| (index, closing)),
        })
    }

    pub fn is_activated(&self) -> bool {
        self.first_activation().is_some()
    }

    /// The extension rounds of the timeline, in order: where each was asked, the end asked
    /// for, its approvers, the end it may be granted with once it has its quorum (the end
    /// asked, narrowed by its approvers), and where it was settled, if it was. An `EXTENDED`
    /// counts only as the outcome of a round with its quorum, never beyond its end.
    fn extension_rounds(&self) -> Vec<Round<'_>> {
        let mut rounds: Vec<Round<'_>> = Vec::new();
        for (index, entry) in self.timeline.iter().enumerate() {
            let open = rounds.last_mut().filter(|round| round.settled.is_none());
            match (entry, open) {
                (Entry::ExtensionRequested { end, .. }, None) => rounds.push(Round {
                    asked: *end,
                    approvers: BTreeSet::new(),
                    ready_end: *end,
                    granted: None,
                    settled: None,
                }),
                (Entry::ExtensionApproved { actor, end, .. }, Some(round))
                    if self.counts(actor) && !round.approvers.contains(actor) =>
                {
                    round.approvers.insert(actor);
                    round.ready_end = round.ready_end.min(*end);
                }
                (Entry::Extended { end, .. }, Some(round))
                    if round.has_quorum(self.approvals_needed) && *end <= round.ready_end =>
                {
                    round.granted = Some(*end);
                    round.settled = Some(index);
                }
                (Entry::ExtensionFailed { .. }, Some(round)) => round.settled = Some(index),
                (entry, Some(round)) if entry.closing().is_some() => round.settled = Some(index),
                _ => {}
            }
        }
        rounds
    }

    /// When the access ends: the latest granted extension's end, or else the requested end
    /// narrowed by the approvers before the grant (the earliest end any approver gave wins).
    pub fn effective_end(&self) -> i64 {
        if let Some(end) = self.extension_rounds().iter().rev().find_map(|round| round.granted) {
            return end;
        }
        let first_round = &self.timeline[..self.first_activation().unwrap_or(self.timeline.len())];
        first_round
            .iter()
            .filter_map(|entry| match entry {
                Entry::Approved { end: Some(end), actor, .. } if self.counts(actor) => Some(*end),
                _ => None,
            })
            .fold(self.end, i64::min)
    }

    /// The end asked for by an extension not yet settled.
    pub fn pending_extension(&self) -> Option<i64> {
        self.extension_rounds().last().filter(|round| round.settled.is_none()).map(|round| round.asked)
    }

    /// The distinct listed reviewers who approved the pending extension.
    pub fn extension_approvers(&self) -> BTreeSet<&Email> {
        let mut rounds = self.extension_rounds();
        match rounds.pop() {
            Some(round) if round.settled.is_none() => round.approvers,
            _ => BTreeSet::new(),
        }
    }

    /// The end a pending extension is granted with once it has its quorum. A self-approved
    /// extension needs no approval.
    pub fn extension_ready(&self) -> Option<i64> {
        let rounds = self.extension_rounds();
        let round = rounds.last().filter(|round| round.settled.is_none())?;
        round.has_quorum(self.approvals_needed).then_some(round.ready_end)
    }

    /// Who approved the window IAM holds or is about to hold: the pending extension's
    /// approvers while it is being written, the granted extension's after, the request's
    /// before any.
    pub fn approvers_of_grant(&self) -> BTreeSet<&Email> {
        let rounds = self.extension_rounds();
        let current = rounds.into_iter().rev().find(|round| {
            round.granted.is_some() || (round.settled.is_none() && round.has_quorum(self.approvals_needed))
        });
        match current {
            Some(round) => round.approvers,
            None => self.approvers(),
        }
    }

    pub fn externally_modified(&self) -> bool {
        self.timeline.iter().any(|entry| matches!(entry, Entry::ExternallyModified { .. }))
    }

    /// The request whose self-activation superseded this grant, if one did.
    pub fn superseded_by(&self) -> Option<&str> {
        self.timeline.iter().find_map(|entry| match entry {
            Entry::Superseded { by, .. } => Some(by.as_str()),
            _ => None,
        })
    }

    /// The state the timeline puts the request in at `now`.
    pub fn state(&self, now: Timestamp) -> State {
        let now = now.unix_seconds();
        if let Some((index, closing)) = self.closing() {
            let removed = || self.timeline[index..].iter().any(|e| matches!(e, Entry::BindingRemoved { .. }));
            return match closing {
                Closing::Denied => State::Denied,
                Closing::Withdrawn => State::Withdrawn,
                Closing::Failed => State::ActivationFailed,
                Closing::Revoked if removed() => State::Revoked,
                Closing::Revoked => State::Revoking,
                Closing::Ended if removed() => State::Ended,
                Closing::Ended => State::Ending,
            };
        }
        if self.is_activated() {
            // An extension with its approvals is written before anything else happens to it:
            // until `EXTENDED` the longer binding may be in IAM already.
            if let Some(end) = self.extension_ready() {
                return if now >= end.max(self.effective_end()) { State::Expired } else { State::Extending };
            }
            return if now >= self.effective_end() {
                State::Expired
            } else if now < self.start {
                State::Scheduled
            } else {
                State::Active
            };
        }
        if self.may_be_granted() {
            return if now >= self.effective_end() { State::Expired } else { State::Activating };
        }
        // A request is approvable until its deadline, and never once its window has ended.
        if now >= self.request_expiry.min(self.end) { State::Expired } else { State::ApprovalAwaited }
    }

    /// Whether `who` may see the request: its parties (administrators too, decided elsewhere).
    pub fn is_party(&self, who: &Email) -> bool {
        &self.beneficiary == who || self.reviewers.contains(who)
    }

    /// Until when the ledger must keep the record: the latest end it may still reach.
    pub fn latest_end(&self) -> i64 {
        let pending = self.pending_extension().unwrap_or(0);
        let review = self.break_glass.map_or(0, |terms| terms.review_deadline);
        self.end.max(self.effective_end()).max(pending).max(self.request_expiry).max(review)
    }
}

/// What IAM must hold for a request: its bindings with this window, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Bindings { start: i64, end: i64 },
    Nothing,
}

/// What IAM must hold for `record` at `now`.
pub fn want(record: &Record, now: Timestamp) -> Want {
    match record.state(now) {
        State::Activating | State::Scheduled | State::Active => {
            Want::Bindings { start: record.start, end: record.effective_end() }
        }
        State::Extending => Want::Bindings {
            start: record.start,
            end: record.extension_ready().unwrap_or(record.effective_end()).max(record.effective_end()),
        },
        _ => Want::Nothing,
    }
}

/// The outcome to record once IAM holds what [`want`] says, for a state that is in progress.
fn outcome(record: &Record, now: Timestamp) -> Option<Entry> {
    let at = now.unix_seconds();
    match record.state(now) {
        State::Activating => Some(Entry::Activated { at }),
        State::Extending => Some(Entry::Extended { at, end: record.extension_ready()? }),
        State::Revoking | State::Ending => Some(Entry::BindingRemoved { at }),
        _ => None,
    }
}

/// The entry that records why a grant or an extension could not be written.
pub fn failure(record: &Record, now: Timestamp, reason: String) -> Option<Entry> {
    let at = now.unix_seconds();
    match record.state(now) {
        State::Activating => Some(Entry::ActivationFailed { at, reason }),
        State::Extending => Some(Entry::ExtensionFailed { at, reason }),
        _ => None,
    }
}

/// The next thing to do for a request, given what this attempt knows IAM holds for it
/// (`held`: what it last wrote, `None` when it wrote nothing) and whether the catalog was
/// asked afresh during it (`checked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask the catalog whether the grant may still be written (eligibility, approvers).
    Check,
    /// Make IAM hold what `Want` says.
    Write(Want),
    /// Record the outcome; on a lost race, read the record again and plan again.
    Record(Entry),
    Done,
}

/// Plans the next step for `record`. Writing a grant or an extension needs a fresh check
/// first; a write the record no longer wants (it was revoked meanwhile, or a stale writer
/// wrote an older window) is set right before anything else.
pub fn next_step(record: &Record, now: Timestamp, held: Option<Want>, checked: bool) -> Step {
    let want = want(record, now);
    let Some(outcome) = outcome(record, now) else {
        return match held {
            Some(held) if held != want => Step::Write(want),
            _ => Step::Done,
        };
    };
    let lengthening = matches!(record.state(now), State::Activating | State::Extending);
    if lengthening && !checked {
        return Step::Check;
    }
    if held != Some(want) {
        return Step::Write(want);
    }
    Step::Record(outcome)
}

#[cfg(test)]
mod tests;
