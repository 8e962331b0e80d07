//! A request's life, as the request ledger records it: an append-only timeline of what
//! happened, the state that follows from it (a pure function of the timeline and `now`, with
//! Privileged Access Manager's names), and the decisions that may add to it.
//!
//! Order of work, so that nothing is lost or half-done: a decision is recorded first, then
//! IAM is written, then the outcome is recorded. A crash in between leaves a state that says
//! what is still to do (`ACTIVATING`: write the binding; `REVOKED`/`ENDED` with the binding
//! still there: remove it), which whoever touches the request next, or the sweeper, completes.

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
    /// `end`: the approver narrowed the window to end then (never later than asked).
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
    Activated {
        at: i64,
    },
    ActivationFailed {
        at: i64,
        reason: String,
    },
    Revoked {
        at: i64,
        actor: Email,
        reason: String,
    },
    Ended {
        at: i64,
        actor: Email,
        #[serde(default)]
        reason: String,
    },
    /// The grant's binding was found changed or removed behind the ledger's back.
    ExternallyModified {
        at: i64,
    },
    /// The requester asked for the grant to last until `end`; peer approval needs a new quorum.
    ExtensionRequested {
        at: i64,
        actor: Email,
        end: i64,
    },
    /// The grant now lasts until `end`, without a gap.
    Extended {
        at: i64,
        end: i64,
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
            | Entry::ExternallyModified { at }
            | Entry::ExtensionRequested { at, .. }
            | Entry::Extended { at, .. } => *at,
        }
    }

    /// The state this entry ends the request in, if it ends it.
    fn terminal(&self) -> Option<State> {
        match self {
            Entry::Denied { .. } => Some(State::Denied),
            Entry::Withdrawn { .. } => Some(State::Withdrawn),
            Entry::Revoked { .. } => Some(State::Revoked),
            Entry::Ended { .. } => Some(State::Ended),
            Entry::ActivationFailed { .. } => Some(State::ActivationFailed),
            _ => None,
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    ApprovalAwaited,
    /// Approved by enough reviewers; the binding is being written.
    Activating,
    /// Granted, with a window that starts later.
    Scheduled,
    Active,
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

    pub fn name(self) -> &'static str {
        match self {
            State::ApprovalAwaited => "APPROVAL_AWAITED",
            State::Activating => "ACTIVATING",
            State::Scheduled => "SCHEDULED",
            State::Active => "ACTIVE",
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
    /// Entitlement IDs: one for peer approval, one or more for a self-activation.
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
    /// The signed activation token: the request's content for peer approval, so a document
    /// written by anyone else cannot invent a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub timeline: Vec<Entry>,
}

impl Record {
    /// The distinct reviewers who approved, never the beneficiary.
    pub fn approvers(&self) -> BTreeSet<&Email> {
        self.approvers_in(&self.timeline)
    }

    fn approvers_in<'a>(&'a self, entries: &'a [Entry]) -> BTreeSet<&'a Email> {
        entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Approved { actor, .. } if actor != &self.beneficiary => Some(actor),
                _ => None,
            })
            .collect()
    }

    pub fn is_activated(&self) -> bool {
        self.timeline.iter().any(|entry| matches!(entry, Entry::Activated { .. }))
    }

    /// When the access ends: the latest extension's end, or else the requested end narrowed
    /// by the approvers (the earliest end any approver gave wins).
    pub fn effective_end(&self) -> i64 {
        let extended = self.timeline.iter().rev().find_map(|entry| match entry {
            Entry::Extended { end, .. } => Some(*end),
            _ => None,
        });
        if let Some(end) = extended {
            return end;
        }
        let activated_at = self.timeline.iter().position(|e| matches!(e, Entry::Activated { .. }));
        let first_round = &self.timeline[..activated_at.unwrap_or(self.timeline.len())];
        first_round
            .iter()
            .filter_map(|entry| match entry {
                Entry::Approved { end: Some(end), actor, .. } if actor != &self.beneficiary => Some(*end),
                _ => None,
            })
            .fold(self.end, i64::min)
    }

    /// An extension asked for and not yet granted: where it stands in the timeline, and the
    /// end it asks for.
    pub fn pending_extension(&self) -> Option<(usize, i64)> {
        let (index, end) = self.timeline.iter().enumerate().rev().find_map(|(i, entry)| match entry {
            Entry::ExtensionRequested { end, .. } => Some((i, *end)),
            _ => None,
        })?;
        let settled =
            self.timeline[index..].iter().any(|e| matches!(e, Entry::Extended { .. }) || e.terminal().is_some());
        (!settled).then_some((index, end))
    }

    /// The end a pending extension may be granted with, once it has its quorum: the end asked
    /// for, narrowed by this round's approvers.
    pub fn extension_ready(&self) -> Option<i64> {
        let (index, asked) = self.pending_extension()?;
        let round: Vec<&Entry> = self.timeline[index + 1..].iter().collect();
        let approvers = self.approvers_after(index);
        if (approvers.len() as u32) < self.approvals_needed {
            return None;
        }
        let narrowed = round.iter().filter_map(|entry| match entry {
            Entry::Approved { end: Some(end), actor, .. } if actor != &self.beneficiary => Some(*end),
            _ => None,
        });
        Some(narrowed.fold(asked, i64::min))
    }

    /// Distinct approvers (never the beneficiary) after the timeline's `index`-th entry.
    fn approvers_after(&self, index: usize) -> BTreeSet<&Email> {
        self.approvers_in(&self.timeline[index + 1..])
    }

    pub fn externally_modified(&self) -> bool {
        self.timeline.iter().any(|entry| matches!(entry, Entry::ExternallyModified { .. }))
    }

    /// The state the timeline puts the request in at `now`.
    pub fn state(&self, now: Timestamp) -> State {
        let now = now.unix_seconds();
        if let Some(terminal) = self.timeline.iter().find_map(Entry::terminal) {
            return terminal;
        }
        let end = self.effective_end();
        if self.is_activated() {
            return if now >= end {
                State::Expired
            } else if now < self.start {
                State::Scheduled
            } else {
                State::Active
            };
        }
        if self.approvers().len() as u32 >= self.approvals_needed {
            return if now >= end { State::Expired } else { State::Activating };
        }
        if now >= self.request_expiry { State::Expired } else { State::ApprovalAwaited }
    }

    /// Whether `who` may see the request: its parties and administrators.
    pub fn is_party(&self, who: &Email) -> bool {
        &self.beneficiary == who || self.reviewers.contains(who) || self.approvers().contains(who)
    }
}

/// What a person asks to do to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `end`: the approver shortens the window to end then.
    Approve {
        reason: String,
        end: Option<i64>,
    },
    Deny {
        reason: String,
    },
    Withdraw {
        reason: String,
    },
    Revoke {
        reason: String,
    },
    /// The requester asks for the grant to last until `end`.
    Extend {
        end: i64,
    },
}

/// What the handler found out about the actor before asking: whether they may review this
/// request now (a peer or a designated approver of the entitlement, read afresh), and whether
/// they are an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    pub may_review: bool,
    pub administrator: bool,
}

/// What to do after the entry is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    /// Quorum reached: write the binding, then record `ACTIVATED` (or `ACTIVATION_FAILED`).
    Activate,
    /// Remove the grant's binding.
    RemoveBinding,
    /// Write the binding with the extended window, then record `EXTENDED`.
    Extend,
}

/// Why an action is refused. Each has a stable code in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you cannot approve or deny your own request")]
    OwnRequest,
    #[error("you are not a reviewer of this request")]
    NotAReviewer,
    #[error("you are no longer eligible to review this request")]
    NoLongerEligible,
    #[error("only the requester can withdraw a request")]
    NotTheRequester,
    #[error("only an approver of this grant or an administrator can revoke it")]
    MayNotRevoke,
    #[error("you approved this request already")]
    AlreadyApprovedByYou,
    #[error("a reason is required")]
    ReasonRequired,
    #[error("an approver may only shorten the window: end it after it starts and no later than requested")]
    Lengthening,
    #[error("an extension must end later than the grant does now")]
    NotLonger,
    #[error("an extension of this grant awaits approval already")]
    ExtensionPending,
    #[error("the request is {}: {}", .0.name(), explain(*.0))]
    WrongState(State),
}

fn explain(state: State) -> &'static str {
    match state {
        State::ApprovalAwaited => "it still awaits approval",
        State::Activating => "its access is being granted right now; try again in a moment",
        State::Scheduled | State::Active => "its access was granted already",
        State::Denied => "a reviewer denied it",
        State::Withdrawn => "the requester withdrew it",
        State::Revoked => "its access was revoked",
        State::Expired => "it expired",
        State::Ended => "its access was ended early",
        State::ActivationFailed => "granting its access failed",
    }
}

/// Up to 500 characters of one line: reasons end up in mail and in the timeline.
const MAX_REASON_CHARS: usize = 500;

fn reason_text(reason: &str, required: bool) -> Result<String, Refusal> {
    let reason: String = reason.trim().chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect();
    if required && reason.is_empty() {
        return Err(Refusal::ReasonRequired);
    }
    Ok(reason)
}

/// Decides `action` by `actor` on `record` at `now`: the entry to record and what to do
/// after. Pure: the handler supplies the actor's standing from a fresh catalog read.
pub fn decide(
    record: &Record,
    actor: &Email,
    action: &Action,
    standing: Standing,
    now: Timestamp,
) -> Result<(Entry, Effect), Refusal> {
    let at = now.unix_seconds();
    let state = record.state(now);
    match action {
        Action::Approve { reason, .. } | Action::Deny { reason } => {
            if actor == &record.beneficiary {
                return Err(Refusal::OwnRequest);
            }
            // Approvals that arrive while the access is being granted, or after, are recorded
            // (they were decided on a request that awaited them) and change nothing else; a
            // deny then is refused. Once the request is over, nothing is recorded.
            let late = matches!(state, State::Activating | State::Active | State::Scheduled);
            let allowed = state == State::ApprovalAwaited || (late && matches!(action, Action::Approve { .. }));
            if !allowed {
                return Err(Refusal::WrongState(state));
            }
            // Reviewers are chosen by the requester among peers and designated approvers.
            if !record.reviewers.contains(actor) {
                return Err(Refusal::NotAReviewer);
            }
            if !standing.may_review {
                return Err(Refusal::NoLongerEligible);
            }
            if let Action::Deny { .. } = action {
                let reason = reason_text(reason, true)?;
                return Ok((Entry::Denied { at, actor: actor.clone(), reason }, Effect::Nothing));
            }
            let end = match action {
                Action::Approve { end: Some(end), .. } => {
                    // Never later than asked: the request's end, or the extension's.
                    let asked = record.pending_extension().filter(|_| late).map_or(record.end, |(_, end)| end);
                    if *end <= record.start.max(at) || *end > asked {
                        return Err(Refusal::Lengthening);
                    }
                    Some(*end)
                }
                _ => None,
            };
            let reason = reason_text(reason, record.approver_reason_required)?;
            // An extension awaiting approval: this approval counts for it alone.
            if let Some((index, _)) = record.pending_extension().filter(|_| late) {
                let round = record.approvers_after(index);
                if round.contains(actor) {
                    return Err(Refusal::AlreadyApprovedByYou);
                }
                let quorum = round.len() as u32 + 1 >= record.approvals_needed;
                let effect = if quorum { Effect::Extend } else { Effect::Nothing };
                return Ok((Entry::Approved { at, actor: actor.clone(), reason, end }, effect));
            }
            if record.approvers().contains(actor) {
                return Err(Refusal::AlreadyApprovedByYou);
            }
            let quorum = record.approvers().len() as u32 + 1 >= record.approvals_needed;
            let effect = match state {
                State::ApprovalAwaited if quorum => Effect::Activate,
                // Whoever touches an activation left half-done completes it.
                State::Activating => Effect::Activate,
                _ => Effect::Nothing,
            };
            Ok((Entry::Approved { at, actor: actor.clone(), reason, end }, effect))
        }
        Action::Withdraw { reason } => {
            if actor != &record.beneficiary {
                return Err(Refusal::NotTheRequester);
            }
            let reason = reason_text(reason, false)?;
            let actor = actor.clone();
            match state {
                State::ApprovalAwaited => Ok((Entry::Withdrawn { at, actor, reason }, Effect::Nothing)),
                State::Scheduled | State::Active => Ok((Entry::Ended { at, actor, reason }, Effect::RemoveBinding)),
                other => Err(Refusal::WrongState(other)),
            }
        }
        Action::Extend { end } => {
            if actor != &record.beneficiary {
                return Err(Refusal::NotTheRequester);
            }
            if !matches!(state, State::Scheduled | State::Active) {
                return Err(Refusal::WrongState(state));
            }
            if *end <= record.effective_end() {
                return Err(Refusal::NotLonger);
            }
            if record.pending_extension().is_some() {
                return Err(Refusal::ExtensionPending);
            }
            // Self-approval extends at once; peer approval waits for a new quorum.
            let effect = if record.approvals_needed == 0 { Effect::Extend } else { Effect::Nothing };
            Ok((Entry::ExtensionRequested { at, actor: actor.clone(), end: *end }, effect))
        }
        Action::Revoke { reason } => {
            let approved = record.approvers().contains(actor);
            if !approved && !standing.administrator {
                return Err(Refusal::MayNotRevoke);
            }
            if !matches!(state, State::Scheduled | State::Active) {
                return Err(Refusal::WrongState(state));
            }
            let reason = reason_text(reason, true)?;
            Ok((Entry::Revoked { at, actor: actor.clone(), reason }, Effect::RemoveBinding))
        }
    }
}

/// The actions `viewer` may try on the request now, for the page's buttons.
pub fn available_actions(record: &Record, viewer: &Email, standing: Standing, now: Timestamp) -> Vec<&'static str> {
    let candidates = [
        ("approve", Action::Approve { reason: "-".into(), end: None }),
        ("deny", Action::Deny { reason: "-".into() }),
        ("withdraw", Action::Withdraw { reason: String::new() }),
        ("revoke", Action::Revoke { reason: "-".into() }),
        ("extend", Action::Extend { end: record.effective_end() + 60 }),
    ];
    candidates
        .into_iter()
        .filter(|(_, action)| decide(record, viewer, action, standing, now).is_ok())
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email(name: &str) -> Email {
        Email::parse(&format!("{name}@example.com")).expect("email")
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    /// Alice asks Bob, Carol and Dave; two approvals needed; window 1000–2000, approvable
    /// until 1500.
    fn record() -> Record {
        Record {
            id: "mpa-test".into(),
            activation_type: ActivationType::Mpa,
            beneficiary: email("alice"),
            reviewers: vec![email("bob"), email("carol"), email("dave")],
            entitlements: vec!["project-1:roles/compute.admin".into()],
            justification: "BUG-1".into(),
            start: 1000,
            end: 2000,
            request_expiry: 1500,
            approvals_needed: 2,
            approver_reason_required: false,
            token: None,
            timeline: vec![Entry::Requested { at: 1000, actor: email("alice") }],
        }
    }

    const REVIEWER: Standing = Standing { may_review: true, administrator: false };

    fn apply(record: &mut Record, actor: &str, action: Action, now: i64) -> Result<Effect, Refusal> {
        let (entry, effect) = decide(record, &email(actor), &action, REVIEWER, at(now))?;
        record.timeline.push(entry);
        if effect == Effect::Activate {
            record.timeline.push(Entry::Activated { at: now });
        }
        Ok(effect)
    }

    fn approve() -> Action {
        Action::Approve { reason: String::new(), end: None }
    }

    #[test]
    fn two_of_three_activates_on_the_second_approval() {
        let mut record = record();
        assert_eq!(record.state(at(1100)), State::ApprovalAwaited);
        assert_eq!(apply(&mut record, "bob", approve(), 1100), Ok(Effect::Nothing));
        assert_eq!(apply(&mut record, "bob", approve(), 1101), Err(Refusal::AlreadyApprovedByYou));
        assert_eq!(record.state(at(1102)), State::ApprovalAwaited);
        assert_eq!(apply(&mut record, "carol", approve(), 1103), Ok(Effect::Activate));
        assert_eq!(record.state(at(1104)), State::Active);
        // Single use: a third approval is recorded and changes nothing else.
        assert_eq!(apply(&mut record, "dave", approve(), 1105), Ok(Effect::Nothing));
        assert_eq!(record.approvers().len(), 3);
        assert_eq!(record.state(at(1106)), State::Active);
        let deny = Action::Deny { reason: "late".into() };
        assert_eq!(apply(&mut record, "dave", deny, 1106), Err(Refusal::WrongState(State::Active)));
        assert_eq!(record.state(at(2000)), State::Expired);
        assert_eq!(apply(&mut record, "bob", approve(), 2001), Err(Refusal::WrongState(State::Expired)));
    }

    #[test]
    fn one_deny_ends_it_and_reasons_are_required_for_deny_and_revoke() {
        let mut record = record();
        let deny = |reason: &str| Action::Deny { reason: reason.into() };
        assert_eq!(apply(&mut record, "bob", deny("  "), 1100), Err(Refusal::ReasonRequired));
        apply(&mut record, "bob", approve(), 1100).expect("approved");
        assert_eq!(apply(&mut record, "dave", deny("not now"), 1101), Ok(Effect::Nothing));
        assert_eq!(record.state(at(1102)), State::Denied);
        assert_eq!(apply(&mut record, "carol", approve(), 1102), Err(Refusal::WrongState(State::Denied)));
    }

    #[test]
    fn who_may_do_what() {
        let mut record = record();
        assert_eq!(apply(&mut record, "alice", approve(), 1100), Err(Refusal::OwnRequest));
        assert_eq!(apply(&mut record, "eve", approve(), 1100), Err(Refusal::NotAReviewer));
        let stale = decide(&record, &email("bob"), &approve(), Standing::default(), at(1100));
        assert_eq!(stale, Err(Refusal::NoLongerEligible), "listed, but no longer eligible");
        assert_eq!(
            apply(&mut record, "bob", Action::Withdraw { reason: String::new() }, 1100),
            Err(Refusal::NotTheRequester)
        );
        assert_eq!(apply(&mut record, "bob", Action::Revoke { reason: "x".into() }, 1100), Err(Refusal::MayNotRevoke));
        record.approver_reason_required = true;
        assert_eq!(apply(&mut record, "bob", approve(), 1100), Err(Refusal::ReasonRequired));
    }

    #[test]
    fn withdraw_before_approval_ends_early_after_and_revoke_removes_the_binding() {
        let mut pending = record();
        assert_eq!(apply(&mut pending, "alice", Action::Withdraw { reason: String::new() }, 1100), Ok(Effect::Nothing));
        assert_eq!(pending.state(at(1100)), State::Withdrawn);

        let mut active = record();
        apply(&mut active, "bob", approve(), 1100).expect("approved");
        apply(&mut active, "carol", approve(), 1101).expect("approved");
        assert_eq!(
            apply(&mut active.clone(), "alice", Action::Withdraw { reason: String::new() }, 1102),
            Ok(Effect::RemoveBinding)
        );
        let revoke = Action::Revoke { reason: "incident over".into() };
        assert_eq!(apply(&mut active.clone(), "dave", revoke.clone(), 1102), Err(Refusal::MayNotRevoke));
        assert_eq!(apply(&mut active, "bob", revoke.clone(), 1102), Ok(Effect::RemoveBinding));
        assert_eq!(active.state(at(1103)), State::Revoked);
        let admin = Standing { may_review: false, administrator: true };
        let mut other = record();
        other.approvals_needed = 1;
        apply(&mut other, "bob", approve(), 1100).expect("approved");
        assert!(decide(&other, &email("root"), &revoke, admin, at(1101)).is_ok(), "an administrator may revoke");
    }

    #[test]
    fn scheduled_activating_and_expiry() {
        let mut record = record();
        record.approvals_needed = 1;
        record.start = 1200;
        record.timeline.push(Entry::Approved { at: 1100, actor: email("bob"), reason: String::new(), end: None });
        assert_eq!(record.state(at(1100)), State::Activating, "decided, binding not written yet");
        record.timeline.push(Entry::Activated { at: 1100 });
        assert_eq!(record.state(at(1100)), State::Scheduled);
        assert_eq!(record.state(at(1200)), State::Active);
        let mut unanswered = self::record();
        unanswered.timeline.truncate(1);
        assert_eq!(unanswered.state(at(1500)), State::Expired);
    }

    #[test]
    fn a_self_activation_is_activating_until_its_binding_is_written() {
        let mut record = record();
        record.activation_type = ActivationType::Jit;
        record.reviewers.clear();
        record.approvals_needed = 0;
        assert_eq!(record.state(at(1000)), State::Activating);
        record.timeline.push(Entry::Activated { at: 1000 });
        assert_eq!(record.state(at(1000)), State::Active);
    }

    #[test]
    fn approvers_narrow_the_window_and_the_earliest_end_wins() {
        let mut record = record();
        let narrow = |end: i64| Action::Approve { reason: String::new(), end: Some(end) };
        assert_eq!(apply(&mut record, "bob", narrow(2500), 1100), Err(Refusal::Lengthening), "never longer");
        assert_eq!(apply(&mut record, "bob", narrow(900), 1100), Err(Refusal::Lengthening), "not before it starts");
        apply(&mut record, "bob", narrow(1800), 1100).expect("narrowed");
        apply(&mut record, "carol", narrow(1900), 1101).expect("narrowed less");
        assert_eq!(record.effective_end(), 1800);
        assert_eq!(record.state(at(1799)), State::Active);
        assert_eq!(record.state(at(1800)), State::Expired);
    }

    #[test]
    fn extensions_self_approved_at_once_peer_approved_after_a_new_quorum() {
        let mut jit = record();
        jit.activation_type = ActivationType::Jit;
        jit.approvals_needed = 0;
        jit.timeline.push(Entry::Activated { at: 1000 });
        let extend = |end: i64| Action::Extend { end };
        assert_eq!(apply(&mut jit, "alice", extend(1500), 1100), Err(Refusal::NotLonger));
        assert_eq!(apply(&mut jit, "bob", extend(2500), 1100), Err(Refusal::NotTheRequester));
        assert_eq!(apply(&mut jit, "alice", extend(2500), 1100), Ok(Effect::Extend));
        assert_eq!(jit.extension_ready(), Some(2500), "no approval needed");
        jit.timeline.push(Entry::Extended { at: 1100, end: 2500 });
        assert_eq!(jit.effective_end(), 2500);
        assert_eq!(jit.state(at(2200)), State::Active);

        let mut mpa = record();
        apply(&mut mpa, "bob", approve(), 1100).expect("approved");
        apply(&mut mpa, "carol", approve(), 1101).expect("active");
        assert_eq!(apply(&mut mpa, "alice", extend(2500), 1200), Ok(Effect::Nothing), "asked");
        assert_eq!(apply(&mut mpa, "alice", extend(2600), 1201), Err(Refusal::ExtensionPending));
        assert_eq!(mpa.effective_end(), 2000, "the grant runs on until the extension is approved");
        assert_eq!(apply(&mut mpa, "bob", approve(), 1300), Ok(Effect::Nothing), "one of two, anew");
        assert_eq!(apply(&mut mpa, "bob", approve(), 1301), Err(Refusal::AlreadyApprovedByYou));
        assert_eq!(mpa.extension_ready(), None, "one approval of two");
        let narrow = Action::Approve { reason: String::new(), end: Some(2400) };
        assert_eq!(apply(&mut mpa, "dave", narrow, 1302), Ok(Effect::Extend));
        assert_eq!(mpa.extension_ready(), Some(2400), "narrowed by an approver");
        mpa.timeline.push(Entry::Extended { at: 1302, end: 2500 });
        assert_eq!(mpa.effective_end(), 2500);
        assert_eq!(mpa.pending_extension(), None);
        let revoke = Action::Revoke { reason: "over".into() };
        apply(&mut mpa, "bob", revoke, 1400).expect("revoked");
        assert_eq!(apply(&mut mpa, "alice", extend(2700), 1401), Err(Refusal::WrongState(State::Revoked)));
    }

    #[test]
    fn entries_read_and_write_as_the_ledger_stores_them() {
        let entry = Entry::Approved { at: 5, actor: email("bob"), reason: "ok".into(), end: None };
        let json = serde_json::to_value(&entry).expect("json");
        assert_eq!(json, serde_json::json!({"type": "APPROVED", "at": 5, "actor": "bob@example.com", "reason": "ok"}));
        assert_eq!(serde_json::from_value::<Entry>(json).expect("entry"), entry);
        let record = record();
        let back: Record = serde_json::from_value(serde_json::to_value(&record).expect("json")).expect("record");
        assert_eq!(back, record);
    }

    fn arbitrary_entry() -> impl Strategy<Value = Entry> {
        let actor = prop::sample::select(vec!["alice", "bob", "carol", "dave", "eve"]).prop_map(email);
        prop_oneof![
            (0i64..3000, actor.clone()).prop_map(|(at, actor)| Entry::Approved {
                at,
                actor,
                reason: String::new(),
                end: None
            }),
            (0i64..3000, actor.clone()).prop_map(|(at, actor)| Entry::Denied { at, actor, reason: "r".into() }),
            (0i64..3000, actor.clone()).prop_map(|(at, actor)| Entry::Withdrawn { at, actor, reason: String::new() }),
            (0i64..3000).prop_map(|at| Entry::Activated { at }),
            (0i64..3000, actor.clone()).prop_map(|(at, actor)| Entry::Revoked { at, actor, reason: "r".into() }),
            (0i64..3000, actor).prop_map(|(at, actor)| Entry::Ended { at, actor, reason: String::new() }),
            (0i64..3000).prop_map(|at| Entry::ActivationFailed { at, reason: "r".into() }),
        ]
    }

    fn arbitrary_action() -> impl Strategy<Value = (String, Action, Standing)> {
        let actor = prop::sample::select(vec!["alice", "bob", "carol", "dave", "eve"]).prop_map(String::from);
        let action = prop_oneof![
            Just(Action::Approve { reason: "r".into(), end: None }),
            Just(Action::Deny { reason: "r".into() }),
            Just(Action::Withdraw { reason: String::new() }),
            Just(Action::Revoke { reason: "r".into() }),
        ];
        (actor, action, any::<(bool, bool)>()).prop_map(|(actor, action, (may_review, administrator))| {
            (actor, action, Standing { may_review, administrator })
        })
    }

    proptest! {
        /// No action changes a request that has ended, whatever the timeline holds.
        #[test]
        fn no_transition_leaves_a_terminal_state(
            entries in prop::collection::vec(arbitrary_entry(), 0..8),
            (actor, action, standing) in arbitrary_action(),
            now in 0i64..3000,
        ) {
            let mut record = record();
            record.timeline.extend(entries);
            let state = record.state(at(now));
            if state.is_terminal() {
                prop_assert!(decide(&record, &email(&actor), &action, standing, at(now)).is_err());
            }
        }

        /// Quorum counts distinct approvers other than the beneficiary, and one deny ends it.
        #[test]
        fn quorum_counts_distinct_approvers_never_the_beneficiary(
            approvers in prop::collection::vec(prop::sample::select(vec!["alice", "bob", "carol"]), 0..10),
            deny in any::<bool>(),
        ) {
            let mut record = record();
            for name in &approvers {
                record.timeline.push(Entry::Approved { at: 1100, actor: email(name), reason: String::new(), end: None });
            }
            let distinct: BTreeSet<&&str> = approvers.iter().filter(|n| **n != "alice").collect();
            if deny {
                record.timeline.push(Entry::Denied { at: 1101, actor: email("dave"), reason: "no".into() });
            }
            let expected = if deny {
                State::Denied
            } else if distinct.len() >= 2 {
                State::Activating
            } else {
                State::ApprovalAwaited
            };
            prop_assert_eq!(record.state(at(1200)), expected);
            prop_assert_eq!(record.approvers().len(), distinct.len());
        }
    }
}
