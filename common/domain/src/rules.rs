//! The decisions about requests and approvals, as pure functions: given what the user asked,
//! what the catalog says they and their peers hold, the settings and `now`, may it go ahead?
//! Handlers and the door gather the inputs and act on the answer; every refusal is decided
//! here, once, and each has one variant of [`Refusal`], one code in the API and one message.
//!
//! - What may be asked: [`entitlement_ids`], [`require_entitlement`], [`reviewers`],
//!   [`may_see_peers`].
//! - How long a grant lasts: [`longest`] (the setting and the approval policy), [`asked_window`]
//!   (now or scheduled), [`extension_end`]; narrowing in [`decide`]; the result in
//!   `Record::effective_end`.
//! - What may be done to a request, by whom (who may approve, deny, withdraw, revoke, extend):
//!   [`decide`], fed with everything it needs in [`Standing`].
//! - Whether a grant may be written or lengthened now: [`may_grant`].
//! - Emergency access (break glass): [`break_glass`] (which roles, how often, who reviews);
//!   ratifying and rejecting it after the fact in [`decide`].

use std::collections::BTreeSet;

use crate::activation::ActivationWindow;
use crate::approval_policy::{BreakGlassRule, Requirement};
use crate::condition::ActivationType;
use crate::config::{ActivationSettings, BreakGlassLimit};
use crate::email::Email;
use crate::entitlement::{Entitlement, EntitlementError, EntitlementId, ResourceId};
use crate::justification::JustificationError;
use crate::lifecycle::{Entry, Record, Review, State};
use crate::timestamp::Timestamp;

/// Why a request or an approval is refused. Each has its own stable code in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Entitlement(#[from] EntitlementError),
    #[error(transparent)]
    Justification(#[from] JustificationError),
    #[error("the duration must be from 1 to {max} minutes, not {minutes}")]
    Duration { minutes: u64, max: u64 },
    #[error("name at least one role to activate")]
    NoEntitlements,
    #[error("at most {max} roles can be activated at once, not {count}")]
    TooManyRoles { count: usize, max: u64 },
    #[error("the entitlement {0} belongs to another project, folder or organization")]
    ProjectMismatch(String),
    #[error("you are not eligible for {0}")]
    NotEligible(String),
    #[error("{id} needs {expected}")]
    WrongActivationType { id: String, expected: &'static str },
    #[error("choose from {min} to {max} reviewers, not {count}")]
    ReviewerCount { count: usize, min: u64, max: u64 },
    #[error("you cannot review your own request")]
    SelfReview,
    #[error("{0} is not eligible to approve this request")]
    ReviewerNotEligible(Email),
    #[error("you cannot approve or deny your own request")]
    SelfApproval,
    #[error("you are not a reviewer of this request")]
    NotAReviewer,
    #[error("you are neither the requester nor a reviewer of this request")]
    NotInvolved,
    #[error("{0} is no longer eligible for this role")]
    BeneficiaryNotEligible(Email),
    #[error("you are no longer eligible for this role, so you cannot approve it")]
    ApproverNotEligible,
    #[error("the requested activation ended at {0}; it can no longer be approved")]
    WindowEnded(Timestamp),
    #[error("the start time {0} is in the past")]
    StartInPast(Timestamp),
    #[error("the start time {start} is too far ahead: at most {max_minutes} minutes")]
    StartTooFar { start: Timestamp, max_minutes: u64 },
    #[error("only {eligible} of the approvers are still eligible to approve; {needed} are needed")]
    TooFewEligibleApprovers { eligible: usize, needed: u32 },
    #[error("you have {count} open requests for {id} already ({open}): end or withdraw one, or extend it")]
    TooManyOpen { id: String, count: usize, open: String },
    #[error("this role needs {needed} approvals: choose at least {needed} reviewers")]
    TooFewReviewers { needed: u32 },
    #[error("only the requester can withdraw or extend a request")]
    NotTheRequester,
    #[error("only an approver of this grant or an administrator can revoke it")]
    MayNotRevoke,
    #[error("you approved this request already")]
    AlreadyApprovedByYou,
    #[error("a reason is required")]
    ReasonRequired,
    #[error(
        "an approver may only shorten the window, while the request awaits approval: end it after it starts and no later than requested"
    )]
    Lengthening,
    #[error("the request is {}: the window can only be shortened while it awaits approval", .0.name())]
    TooLateToNarrow(State),
    #[error("an extension must end later than the grant does now")]
    NotLonger,
    #[error("an extension of this grant awaits approval already")]
    ExtensionPending,
    #[error("no extension of this grant awaits approval")]
    NoExtensionPending,
    #[error("approve the extension with an end after the grant's current end and no later than asked")]
    ExtensionEnd,
    #[error("the request is {}: {}", .0.name(), explain(*.0))]
    WrongState(State),
    #[error("{0} has no emergency access: no approval policy rule opens break glass for it")]
    NoBreakGlass(String),
    #[error("you used emergency access {count} times in the last {period}; the next is allowed at {next}")]
    BreakGlassLimit { count: usize, period: String, next: Timestamp },
    #[error("nobody else may approve {0}, so nobody could review emergency access to it")]
    NobodyToReview(String),
    #[error("this is emergency access, granted already: ratify or reject it")]
    BreakGlassReviewOnly,
    #[error("only emergency access is ratified or rejected; approve or deny this request")]
    NotBreakGlass,
    #[error("you cannot ratify or reject your own emergency access")]
    SelfReviewOfBreakGlass,
    #[error("the review of this emergency access is closed: {}", .0.name())]
    ReviewClosed(Review),
    #[error("only a reviewer of this emergency access or an administrator can reject it")]
    MayNotReject,
}

/// What a person asks to do to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Approve the request as asked; `end` shortens its window (only while it awaits approval).
    Approve {
        reason: String,
        end: Option<i64>,
    },
    Deny {
        reason: String,
    },
    /// The requester withdraws a pending request, or ends a grant early.
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
    /// A reviewer approves the pending extension, until `end` (at most what was asked).
    ApproveExtension {
        reason: String,
        end: i64,
    },
    /// A reviewer ratifies an emergency grant after the fact.
    Ratify {
        reason: String,
    },
    /// A reviewer or an administrator rejects an emergency grant: revoked if still live.
    Reject {
        reason: String,
    },
}

/// What the door found out, afresh, before asking: whether the actor may review the request
/// now (a peer or a designated approver of the entitlement), whether they are an
/// administrator, and whether the beneficiary still holds the entitlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    pub may_review: bool,
    pub administrator: bool,
    pub beneficiary_eligible: bool,
}

/// What a decision adds to the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Record(Entry),
    /// The same action again while it is being carried out: nothing new to record, finish it.
    Complete,
}

fn explain(state: State) -> &'static str {
    match state {
        State::ApprovalAwaited => "it still awaits approval",
        State::Activating => "its access is being granted right now; try again in a moment",
        State::Scheduled | State::Active => "its access was granted already; to lengthen it, approve an extension",
        State::Extending => "its extension is being granted right now; try again in a moment",
        State::Revoking => "its access is being revoked",
        State::Ending => "its access is being ended",
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

/// Decides `action` by `actor` on `record` at `now`: the entry to record. Pure: the door
/// supplies the actor's standing from a fresh catalog read. What IAM must do next follows
/// from the state the entry leads to ([`next_step`]).
pub fn decide(
    record: &Record,
    actor: &Email,
    action: &Action,
    standing: Standing,
    now: Timestamp,
) -> Result<Decision, Refusal> {
    let at = now.unix_seconds();
    let state = record.state(now);
    let record_entry = |entry: Entry| Ok(Decision::Record(entry));
    let emergency = record.break_glass.is_some();
    if emergency
        && matches!(
            action,
            Action::Approve { .. } | Action::Deny { .. } | Action::Extend { .. } | Action::ApproveExtension { .. }
        )
    {
        return Err(Refusal::BreakGlassReviewOnly);
    }
    match action {
        Action::Approve { reason, end } => {
            if actor != &record.beneficiary && at >= record.end && state == State::Expired {
                return Err(Refusal::WindowEnded(
                    Timestamp::from_unix_seconds(record.end).unwrap_or(Timestamp::UNIX_EPOCH),
                ));
            }
            // An approval that arrives once the grant is decided is recorded (it was given to a
            // request that awaited it) and changes nothing: it never narrows the window, and
            // never approves an extension, which has an approval of its own.
            let late = matches!(state, State::Activating | State::Scheduled | State::Active);
            // The request's own deadline bounds approving it, late approvals included.
            if late && at >= record.request_expiry {
                return Err(Refusal::WrongState(state));
            }
            let expected = if late { state } else { State::ApprovalAwaited };
            reviewer_may_act(record, actor, standing, state, expected)?;
            if record.approvers().contains(actor) {
                return Err(Refusal::AlreadyApprovedByYou);
            }
            if let Some(end) = end {
                if late {
                    return Err(Refusal::TooLateToNarrow(state));
                }
                if *end <= record.start.max(at) || *end > record.end {
                    return Err(Refusal::Lengthening);
                }
            }
            let reason = reason_text(reason, record.approver_reason_required)?;
            record_entry(Entry::Approved { at, actor: actor.clone(), reason, end: *end })
        }
        Action::Deny { reason } => {
            reviewer_may_act(record, actor, standing, state, State::ApprovalAwaited)?;
            let reason = reason_text(reason, true)?;
            record_entry(Entry::Denied { at, actor: actor.clone(), reason })
        }
        Action::Withdraw { reason } => {
            if actor != &record.beneficiary {
                return Err(Refusal::NotTheRequester);
            }
            let reason = reason_text(reason, false)?;
            let actor = actor.clone();
            match state {
                State::ApprovalAwaited => record_entry(Entry::Withdrawn { at, actor, reason }),
                live if live.is_live() => record_entry(Entry::Ended { at, actor, reason }),
                State::Ending => Ok(Decision::Complete),
                other => Err(Refusal::WrongState(other)),
            }
        }
        Action::Revoke { reason } => {
            // An emergency grant's reviewers may revoke it early, as an approver may any grant.
            let reviewer = emergency && actor != &record.beneficiary && record.reviewers.contains(actor);
            if !record.approvers().contains(actor) && !standing.administrator && !reviewer {
                return Err(Refusal::MayNotRevoke);
            }
            match state {
                live if live.is_live() => {
                    let reason = reason_text(reason, true)?;
                    record_entry(Entry::Revoked { at, actor: actor.clone(), reason })
                }
                State::Revoking => Ok(Decision::Complete),
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
            if record.pending_extension().is_some() {
                return Err(Refusal::ExtensionPending);
            }
            if *end <= record.effective_end() {
                return Err(Refusal::NotLonger);
            }
            if !standing.beneficiary_eligible {
                return Err(Refusal::BeneficiaryNotEligible(record.beneficiary.clone()));
            }
            record_entry(Entry::ExtensionRequested { at, actor: actor.clone(), end: *end })
        }
        Action::ApproveExtension { reason, end } => {
            if state == State::Extending {
                return Err(Refusal::WrongState(state));
            }
            let Some(asked) = record.pending_extension().filter(|_| state.is_live()) else {
                return Err(Refusal::NoExtensionPending);
            };
            reviewer_may_act(record, actor, standing, state, state)?;
            if record.extension_approvers().contains(actor) {
                return Err(Refusal::AlreadyApprovedByYou);
            }
            if *end <= record.effective_end().max(at) || *end > asked {
                return Err(Refusal::ExtensionEnd);
            }
            let reason = reason_text(reason, record.approver_reason_required)?;
            record_entry(Entry::ExtensionApproved { at, actor: actor.clone(), reason, end: *end })
        }
        Action::Ratify { reason } => {
            open_review(record, actor, now)?;
            listed_and_eligible(record, actor, standing)?;
            if record.ratifiers().contains(actor) {
                return Err(Refusal::AlreadyApprovedByYou);
            }
            let reason = reason_text(reason, record.approver_reason_required)?;
            record_entry(Entry::Ratified { at, actor: actor.clone(), reason })
        }
        Action::Reject { reason } => {
            open_review(record, actor, now)?;
            let reviewer = listed_and_eligible(record, actor, standing).is_ok();
            if !reviewer && !standing.administrator {
                return Err(Refusal::MayNotReject);
            }
            let reason = reason_text(reason, true)?;
            record_entry(Entry::Rejected { at, actor: actor.clone(), reason })
        }
    }
}

/// Ratifying or rejecting needs: an emergency grant, someone other than its beneficiary, and
/// its review still open.
fn open_review(record: &Record, actor: &Email, now: Timestamp) -> Result<(), Refusal> {
    let Some(review) = record.review(now) else {
        return Err(Refusal::NotBreakGlass);
    };
    if actor == &record.beneficiary {
        return Err(Refusal::SelfReviewOfBreakGlass);
    }
    if review != Review::Pending {
        return Err(Refusal::ReviewClosed(review));
    }
    Ok(())
}

/// A reviewer's decision needs: someone other than the beneficiary, the request in `expected`,
/// the actor listed and still eligible to review, the beneficiary still eligible.
fn reviewer_may_act(
    record: &Record,
    actor: &Email,
    standing: Standing,
    state: State,
    expected: State,
) -> Result<(), Refusal> {
    if actor == &record.beneficiary {
        return Err(Refusal::SelfApproval);
    }
    if state != expected {
        return Err(Refusal::WrongState(state));
    }
    listed_and_eligible(record, actor, standing)?;
    if !standing.beneficiary_eligible {
        return Err(Refusal::BeneficiaryNotEligible(record.beneficiary.clone()));
    }
    Ok(())
}

/// Only a reviewer the request lists, and who may still review it (a fresh catalog read),
/// approves, denies, ratifies or rejects as a reviewer.
fn listed_and_eligible(record: &Record, actor: &Email, standing: Standing) -> Result<(), Refusal> {
    if !record.reviewers.contains(actor) {
        return Err(Refusal::NotAReviewer);
    }
    if !standing.may_review {
        return Err(Refusal::ApproverNotEligible);
    }
    Ok(())
}

/// The actions `viewer` may try on the request now, for the page's buttons.
pub fn available_actions(record: &Record, viewer: &Email, standing: Standing, now: Timestamp) -> Vec<&'static str> {
    let extension_end = record.pending_extension().unwrap_or(record.effective_end() + 60);
    let candidates = [
        ("approve", Action::Approve { reason: "-".into(), end: None }),
        ("deny", Action::Deny { reason: "-".into() }),
        ("withdraw", Action::Withdraw { reason: String::new() }),
        ("revoke", Action::Revoke { reason: "-".into() }),
        ("extend", Action::Extend { end: record.effective_end() + 60 }),
        ("approve-extension", Action::ApproveExtension { reason: "-".into(), end: extension_end }),
        ("ratify", Action::Ratify { reason: "-".into() }),
        ("reject", Action::Reject { reason: "-".into() }),
    ];
    candidates
        .into_iter()
        .filter(|(_, action)| decide(record, viewer, action, standing, now).is_ok())
        .map(|(name, _)| name)
        .collect()
}

/// At most this many open requests (pending, scheduled or active) per person and
/// entitlement: each active or scheduled one holds its own binding, and IAM bounds how many
/// conditional bindings a policy may hold.
pub const MAX_OPEN_PER_ENTITLEMENT: usize = 3;

/// What the catalog says, afresh, about the people of a request: the beneficiary's
/// entitlements on the resource (self-approval), or how each person stands towards the one
/// entitlement (peer approval: the beneficiary and every listed reviewer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fresh {
    Jit(Vec<Entitlement>),
    Mpa(std::collections::BTreeMap<Email, crate::eligibility::Holding>),
}

/// May the grant `record` describes be written, or lengthened, to end at `end` now? The
/// beneficiary must still hold every entitlement the way the request asked for it, the
/// justification must still match today's policy, the window must stay within the longest
/// duration (`max_minutes`: the setting, or the approval policy's when shorter), and for peer
/// approval enough of the approvers (`approvers`: of the request, or of its extension) must
/// still be eligible to approve it.
pub fn may_grant(
    record: &Record,
    end: i64,
    approvers: &BTreeSet<&Email>,
    fresh: &Fresh,
    settings: &ActivationSettings,
    max_minutes: u64,
) -> Result<(), Refusal> {
    settings.justification.check(&record.justification)?;
    let minutes = ((end - record.start).max(0) as u64).div_ceil(60);
    if minutes > max_minutes {
        return Err(Refusal::Duration { minutes, max: max_minutes });
    }
    for text in &record.entitlements {
        let id = EntitlementId::parse(text)?;
        match fresh {
            Fresh::Jit(held) => require_entitlement(held, &id, ActivationType::Jit)?,
            Fresh::Mpa(holdings) => {
                let holds = holdings.get(&record.beneficiary).is_some_and(|h| h.mpa);
                if !holds {
                    return Err(Refusal::BeneficiaryNotEligible(record.beneficiary.clone()));
                }
                // An emergency grant is approved after the fact.
                let eligible = approvers.iter().filter(|a| holdings.get(**a).is_some_and(|h| h.may_review())).count();
                if record.break_glass.is_none() && (eligible as u32) < record.approvals_needed {
                    return Err(Refusal::TooFewEligibleApprovers { eligible, needed: record.approvals_needed });
                }
            }
        }
    }
    Ok(())
}

/// How a grant comes about, for [`longest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    SelfApproval,
    PeerApproval,
    BreakGlass,
}

impl Path {
    pub fn of(record: &Record) -> Path {
        match (record.break_glass, record.activation_type) {
            (Some(_), _) => Path::BreakGlass,
            (None, ActivationType::Mpa) => Path::PeerApproval,
            (None, ActivationType::Jit) => Path::SelfApproval,
        }
    }
}

/// How long a grant may last, in minutes: `ACTIVATION_TIMEOUT`, or the approval policy's
/// `maxDuration` for the role when shorter (peer approval only: self-approval has no policy),
/// or for emergency access its rule's `breakGlass.maxDuration` (0 where the role has none).
/// The one answer to "how long": every window, extension and check below asks it.
pub fn longest(settings: &ActivationSettings, requirement: &Requirement, path: Path) -> u64 {
    let limit = match path {
        Path::SelfApproval => None,
        Path::PeerApproval => requirement.max_duration_minutes,
        Path::BreakGlass => Some(requirement.break_glass.map_or(0, |rule| rule.max_duration_minutes)),
    };
    limit.map_or(settings.max_activation_minutes, |max| max.min(settings.max_activation_minutes))
}

/// The window a person asks for: `minutes` long (1 to `longest`), starting at `start`
/// (scheduled: not in the past, a minute's clock skew forgiven, at most
/// `ACTIVATION_MAX_SCHEDULE` ahead) or `now`.
pub fn asked_window(
    now: Timestamp,
    start: Option<Timestamp>,
    minutes: u64,
    longest: u64,
    settings: &ActivationSettings,
) -> Result<ActivationWindow, Refusal> {
    if minutes == 0 || minutes > longest {
        return Err(Refusal::Duration { minutes, max: longest });
    }
    let start = match start {
        None => now,
        Some(start) if start < now.plus_seconds(-60) => return Err(Refusal::StartInPast(start)),
        Some(start) if start > now.plus_seconds(settings.max_schedule_minutes as i64 * 60) => {
            return Err(Refusal::StartTooFar { start, max_minutes: settings.max_schedule_minutes });
        }
        Some(start) => start.max(now),
    };
    // Non-empty by the check above.
    ActivationWindow::new(start, start.plus_seconds(minutes as i64 * 60))
        .map_err(|_| Refusal::Duration { minutes, max: longest })
}

/// The window a self-activation or a request asks for (see [`asked_window`]).
pub fn scheduled_window(
    now: Timestamp,
    start: Option<Timestamp>,
    minutes: u64,
    settings: &ActivationSettings,
) -> Result<ActivationWindow, Refusal> {
    asked_window(now, start, minutes, settings.max_activation_minutes, settings)
}

/// The end an extension asks for: `minutes` from the grant's original start, within `longest`.
pub fn extension_end(record: &Record, minutes: u64, longest: u64) -> Result<i64, Refusal> {
    if minutes == 0 || minutes > longest {
        return Err(Refusal::Duration { minutes, max: longest });
    }
    Ok(record.start + minutes as i64 * 60)
}

/// Until when a peer-approval request may be approved: `ACTIVATION_REQUEST_TIMEOUT` from now,
/// and never after the window's start (a scheduled request) or end, nor past the 12 hours a
/// signed token may live (`signJwt`'s limit, with a margin), so the token and the record say
/// the same.
pub fn request_expiry(now: Timestamp, window: &ActivationWindow, settings: &ActivationSettings) -> Timestamp {
    let timeout_end = now.plus_seconds(settings.request_timeout_minutes as i64 * 60);
    let timeout_end = if window.start() > now { timeout_end.min(window.start()) } else { timeout_end };
    let signable =
        now.plus_seconds(crate::token::MAX_TOKEN_LIFETIME_SECONDS - crate::token::TOKEN_LIFETIME_MARGIN_SECONDS);
    timeout_end.min(window.end()).min(signable)
}

/// Who may see the peers of an entitlement: only a holder of it with peer approval, so that
/// nobody else learns who holds what.
pub fn may_see_peers(held: &[Entitlement], id: &EntitlementId) -> Result<(), Refusal> {
    require_entitlement(held, id, ActivationType::Mpa)
}

/// The entitlement `text` names, which must be on the route's resource `project`: an ID of
/// another resource is refused, never read as this one.
pub fn entitlement_id(project: &ResourceId, text: &str) -> Result<EntitlementId, Refusal> {
    let id = EntitlementId::parse(text)?;
    if id.resource() != project {
        return Err(Refusal::ProjectMismatch(text.to_string()));
    }
    Ok(id)
}

/// Parses the IDs of a self-activation: at least one, all on `project`, duplicates folded,
/// at most `ACTIVATION_REQUEST_MAX_ROLES`.
pub fn entitlement_ids(
    project: &ResourceId,
    ids: &[String],
    settings: &ActivationSettings,
) -> Result<Vec<EntitlementId>, Refusal> {
    let mut parsed = BTreeSet::new();
    for text in ids {
        parsed.insert(entitlement_id(project, text)?);
    }
    if parsed.is_empty() {
        return Err(Refusal::NoEntitlements);
    }
    if parsed.len() as u64 > settings.max_roles {
        return Err(Refusal::TooManyRoles { count: parsed.len(), max: settings.max_roles });
    }
    Ok(parsed.into_iter().collect())
}

/// The user must hold `id`, activated the `expected` way: a peer-approved role cannot be
/// self-activated, and a self-approvable one is not sent through peer approval.
pub fn require_entitlement(held: &[Entitlement], id: &EntitlementId, expected: ActivationType) -> Result<(), Refusal> {
    let Some(entitlement) = held.iter().find(|e| &e.id == id) else {
        return Err(Refusal::NotEligible(id.to_string()));
    };
    if entitlement.activation_type != expected {
        let expected = match entitlement.activation_type {
            ActivationType::Jit => "self-approval: use self-activate",
            ActivationType::Mpa => "a peer's approval: request it",
        };
        return Err(Refusal::WrongActivationType { id: id.to_string(), expected });
    }
    Ok(())
}

/// Emergency access for `id`: the rule that opens it, or the refusal. `uses`: when the person
/// broke glass before (Unix seconds); at most `limit.count` in any `limit.period_seconds`.
pub fn break_glass(
    requirement: &Requirement,
    id: &EntitlementId,
    uses: &[i64],
    limit: BreakGlassLimit,
    now: Timestamp,
) -> Result<BreakGlassRule, Refusal> {
    let rule = requirement.break_glass.ok_or_else(|| Refusal::NoBreakGlass(id.to_string()))?;
    let since = now.unix_seconds() - limit.period_seconds;
    let mut recent: Vec<i64> = uses.iter().copied().filter(|at| *at > since).collect();
    if recent.len() >= limit.count as usize {
        recent.sort_unstable();
        // The oldest use that keeps the count at the limit leaves the window first.
        let freeing = recent[recent.len() - limit.count as usize];
        let next = Timestamp::from_unix_seconds(freeing + limit.period_seconds).unwrap_or(now);
        return Err(Refusal::BreakGlassLimit { count: recent.len(), period: period_text(limit.period_seconds), next });
    }
    Ok(rule)
}

fn period_text(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

/// At most this many reviewers of an emergency grant, each told and each able to ratify.
pub const MAX_BREAK_GLASS_REVIEWERS: usize = 20;

/// Who reviews an emergency grant: everyone who may approve the role (`qualified`: its peers
/// and designated approvers) but the beneficiary, up to [`MAX_BREAK_GLASS_REVIEWERS`].
pub fn break_glass_reviewers(
    beneficiary: &Email,
    qualified: &[Email],
    id: &EntitlementId,
) -> Result<Vec<Email>, Refusal> {
    let reviewers: BTreeSet<&Email> = qualified.iter().filter(|person| *person != beneficiary).collect();
    if reviewers.is_empty() {
        return Err(Refusal::NobodyToReview(id.to_string()));
    }
    Ok(reviewers.into_iter().take(MAX_BREAK_GLASS_REVIEWERS).cloned().collect())
}

/// Checks the chosen reviewers: count within limits and at least the approvals the role needs
/// (`needed`), not the requester, each able to review (`qualified`: holders of the same
/// peer-approved entitlement, and its designated approvers). Returns them deduplicated.
pub fn reviewers(
    requester: &Email,
    chosen: &[Email],
    qualified: &[Email],
    settings: &ActivationSettings,
    needed: u32,
) -> Result<Vec<Email>, Refusal> {
    let unique: BTreeSet<&Email> = chosen.iter().collect();
    if unique.contains(requester) {
        return Err(Refusal::SelfReview);
    }
    let count = unique.len();
    if (count as u32) < needed {
        return Err(Refusal::TooFewReviewers { needed });
    }
    if (count as u64) < settings.min_reviewers || count as u64 > settings.max_reviewers {
        return Err(Refusal::ReviewerCount { count, min: settings.min_reviewers, max: settings.max_reviewers });
    }
    if let Some(stranger) = unique.iter().find(|reviewer| !qualified.contains(reviewer)) {
        return Err(Refusal::ReviewerNotEligible((*stranger).clone()));
    }
    Ok(unique.into_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn settings(pairs: &[(&str, &str)]) -> ActivationSettings {
        let mut env = Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()));
        let settings = ActivationSettings::read(&mut env);
        env.finish().expect("valid");
        settings
    }

    fn email(text: &str) -> Email {
        Email::parse(text).expect("email")
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn project() -> ResourceId {
        ResourceId::parse("project-1").expect("project")
    }

    fn holders() -> Vec<Email> {
        vec![email("alice@example.com"), email("bob@example.com"), email("dave@example.com")]
    }

    #[test]
    fn duration_must_be_within_limits() {
        let settings = settings(&[("ACTIVATION_TIMEOUT", "60")]);
        assert!(scheduled_window(at(0), None, 60, &settings).is_ok());
        assert_eq!(scheduled_window(at(0), None, 0, &settings), Err(Refusal::Duration { minutes: 0, max: 60 }));
        assert_eq!(scheduled_window(at(0), None, 61, &settings), Err(Refusal::Duration { minutes: 61, max: 60 }));
        let window = scheduled_window(at(0), None, 5, &settings).expect("valid");
        assert_eq!(window.duration_seconds(), 300);
        // The approval policy's maxDuration bounds peer approval, never self-approval.
        let policy = Requirement {
            approvals: 2,
            approver_reason_required: false,
            max_duration_minutes: Some(30),
            break_glass: None,
        };
        assert_eq!(longest(&settings, &policy, Path::PeerApproval), 30);
        assert_eq!(longest(&settings, &policy, Path::SelfApproval), 60);
        let roomy = Requirement { max_duration_minutes: Some(600), ..policy };
        assert_eq!(longest(&settings, &roomy, Path::PeerApproval), 60, "never past the setting");
        assert_eq!(asked_window(at(0), None, 45, 30, &settings), Err(Refusal::Duration { minutes: 45, max: 30 }));
    }

    #[test]
    fn self_activation_ids_are_checked_and_folded() {
        let settings = settings(&[("ACTIVATION_REQUEST_MAX_ROLES", "2")]);
        let ids = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let folded = entitlement_ids(&project(), &ids(&["project-1:roles/a.b", "project-1:roles/a.b"]), &settings)
            .expect("valid");
        assert_eq!(folded.len(), 1);
        assert_eq!(entitlement_ids(&project(), &[], &settings), Err(Refusal::NoEntitlements));
        assert!(matches!(
            entitlement_ids(&project(), &ids(&["project-2:roles/a.b"]), &settings),
            Err(Refusal::ProjectMismatch(_))
        ));
        assert_eq!(
            entitlement_ids(
                &project(),
                &ids(&["project-1:roles/a", "project-1:roles/b", "project-1:roles/c"]),
                &settings
            ),
            Err(Refusal::TooManyRoles { count: 3, max: 2 })
        );
        assert!(matches!(entitlement_ids(&project(), &ids(&["nonsense"]), &settings), Err(Refusal::Entitlement(_))));
    }

    #[test]
    fn activation_type_must_match() {
        let id = EntitlementId::parse("project-1:roles/compute.admin").expect("id");
        let held = vec![Entitlement { id: id.clone(), activation_type: ActivationType::Mpa }];
        assert!(require_entitlement(&held, &id, ActivationType::Mpa).is_ok());
        assert!(matches!(
            require_entitlement(&held, &id, ActivationType::Jit),
            Err(Refusal::WrongActivationType { .. })
        ));
        let jit = vec![Entitlement { id: id.clone(), activation_type: ActivationType::Jit }];
        assert!(matches!(
            require_entitlement(&jit, &id, ActivationType::Mpa),
            Err(Refusal::WrongActivationType { .. })
        ));
        assert!(matches!(require_entitlement(&[], &id, ActivationType::Jit), Err(Refusal::NotEligible(_))));
    }

    #[test]
    fn reviewers_are_peers_within_limits_and_never_the_requester() {
        let settings = settings(&[("ACTIVATION_REQUEST_MAX_REVIEWERS", "2")]);
        let alice = email("alice@example.com");
        let bob = email("bob@example.com");
        let dave = email("dave@example.com");
        let chosen = reviewers(&alice, &[bob.clone(), bob.clone()], &holders(), &settings, 1).expect("valid");
        assert_eq!(chosen, vec![bob.clone()]);
        assert_eq!(
            reviewers(&alice, &[bob.clone(), alice.clone()], &holders(), &settings, 1),
            Err(Refusal::SelfReview)
        );
        assert_eq!(
            reviewers(&alice, &[], &holders(), &settings, 0),
            Err(Refusal::ReviewerCount { count: 0, min: 1, max: 2 })
        );
        let carol = email("carol@example.com");
        assert_eq!(
            reviewers(&alice, &[bob.clone(), dave.clone(), carol.clone()], &holders(), &settings, 1),
            Err(Refusal::ReviewerCount { count: 3, min: 1, max: 2 })
        );
        assert_eq!(
            reviewers(&alice, std::slice::from_ref(&carol), &holders(), &settings, 1),
            Err(Refusal::ReviewerNotEligible(carol))
        );
        assert_eq!(
            reviewers(&alice, std::slice::from_ref(&bob), &holders(), &settings, 2),
            Err(Refusal::TooFewReviewers { needed: 2 }),
            "as many reviewers as the role needs approvals"
        );
    }

    /// Alice's request for compute.admin on project-1, two approvals needed, Bob and Dave
    /// approved it: as the ledger holds it when the grant is about to be written.
    fn approved() -> Record {
        use crate::lifecycle::{Entry, Record};
        let (alice, bob, dave) = (email("alice@example.com"), email("bob@example.com"), email("dave@example.com"));
        let approved =
            |actor: &Email| Entry::Approved { at: 1_100, actor: actor.clone(), reason: String::new(), end: None };
        Record {
            id: "mpa-x".into(),
            activation_type: ActivationType::Mpa,
            beneficiary: alice.clone(),
            reviewers: vec![bob.clone(), dave.clone()],
            entitlements: vec!["project-1:roles/compute.admin".into()],
            justification: "BUG-12345".into(),
            start: 1_000,
            end: 4_600,
            request_expiry: 4_600,
            approvals_needed: 2,
            approver_reason_required: false,
            break_glass: None,
            token: None,
            timeline: vec![Entry::Requested { at: 1_000, actor: alice }, approved(&bob), approved(&dave)],
        }
    }

    /// How each of the request's people stands: the beneficiary and both approvers eligible,
    /// but those named in `lost`.
    fn fresh(lost: &[&str]) -> Fresh {
        let holding = |who: &str| crate::eligibility::Holding { mpa: !lost.contains(&who), ..Default::default() };
        Fresh::Mpa(
            ["alice@example.com", "bob@example.com", "dave@example.com"]
                .into_iter()
                .map(|who| (email(who), holding(who)))
                .collect(),
        )
    }

    fn grant(record: &Record, fresh: &Fresh, settings: &ActivationSettings) -> Result<(), Refusal> {
        may_grant(record, record.end, &record.approvers(), fresh, settings, settings.max_activation_minutes)
    }

    #[test]
    fn a_grant_with_its_quorum_of_eligible_approvers_may_be_written() {
        assert_eq!(grant(&approved(), &fresh(&[]), &settings(&[])), Ok(()));
    }

    #[test]
    fn beneficiary_who_lost_eligibility_cannot_be_approved() {
        let outcome = grant(&approved(), &fresh(&["alice@example.com"]), &settings(&[]));
        assert_eq!(outcome, Err(Refusal::BeneficiaryNotEligible(email("alice@example.com"))));
    }

    #[test]
    fn reviewer_who_lost_eligibility_cannot_approve() {
        let outcome = grant(&approved(), &fresh(&["bob@example.com"]), &settings(&[]));
        assert_eq!(outcome, Err(Refusal::TooFewEligibleApprovers { eligible: 1, needed: 2 }));
    }

    #[test]
    fn justification_must_still_match_the_policy() {
        let strict = settings(&[("JUSTIFICATION_PATTERN", "CASE-\\d+")]);
        let outcome = grant(&approved(), &fresh(&[]), &strict);
        assert!(matches!(outcome, Err(Refusal::Justification(_))), "{outcome:?}");
    }

    #[test]
    fn duration_must_still_be_allowed() {
        let shorter = settings(&[("ACTIVATION_TIMEOUT", "30")]);
        let outcome = grant(&approved(), &fresh(&[]), &shorter);
        assert_eq!(outcome, Err(Refusal::Duration { minutes: 60, max: 30 }));
    }

    #[test]
    fn a_self_activation_needs_the_role_with_self_approval() {
        let mut record = approved();
        record.activation_type = ActivationType::Jit;
        record.approvals_needed = 0;
        let id = EntitlementId::parse("project-1:roles/compute.admin").expect("id");
        let held = |kind| Fresh::Jit(vec![Entitlement { id: id.clone(), activation_type: kind }]);
        assert_eq!(grant(&record, &held(ActivationType::Jit), &settings(&[])), Ok(()));
        assert!(matches!(
            grant(&record, &held(ActivationType::Mpa), &settings(&[])),
            Err(Refusal::WrongActivationType { .. })
        ));
        assert!(matches!(grant(&record, &Fresh::Jit(Vec::new()), &settings(&[])), Err(Refusal::NotEligible(_))));
    }
}
