//! The decisions about requests and approvals, as pure functions: given what the user asked,
//! what the catalog says they and their peers hold, the settings and `now`, may it go ahead?
//! Handlers gather the inputs and act on the answer; every refusal is decided here, once.

use std::collections::BTreeSet;

use crate::activation::ActivationWindow;
use crate::condition::ActivationType;
use crate::config::ActivationSettings;
use crate::email::Email;
use crate::entitlement::{Entitlement, EntitlementError, EntitlementId, ResourceId};
use crate::justification::JustificationError;
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
    #[error("you cannot approve your own request")]
    SelfApproval,
    #[error("the request does not permit approval by {0}")]
    NotAReviewer(Email),
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
    record: &crate::lifecycle::Record,
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
                let eligible = approvers.iter().filter(|a| holdings.get(**a).is_some_and(|h| h.may_review())).count();
                if (eligible as u32) < record.approvals_needed {
                    return Err(Refusal::TooFewEligibleApprovers { eligible, needed: record.approvals_needed });
                }
            }
        }
    }
    Ok(())
}

/// The activation window for a duration chosen by the user, starting `now`.
pub fn activation_window(
    now: Timestamp,
    minutes: u64,
    settings: &ActivationSettings,
) -> Result<ActivationWindow, Refusal> {
    let max = settings.max_activation_minutes;
    if minutes == 0 || minutes > max {
        return Err(Refusal::Duration { minutes, max });
    }
    // Non-empty by the check above.
    ActivationWindow::new(now, now.plus_seconds(minutes as i64 * 60)).map_err(|_| Refusal::Duration { minutes, max })
}

/// The activation window for a duration chosen by the user, starting at `start` (RFC 3339,
/// scheduled) or `now`: not in the past (a minute's clock skew forgiven), at most
/// `ACTIVATION_MAX_SCHEDULE` ahead.
pub fn scheduled_window(
    now: Timestamp,
    start: Option<Timestamp>,
    minutes: u64,
    settings: &ActivationSettings,
) -> Result<ActivationWindow, Refusal> {
    let Some(start) = start else {
        return activation_window(now, minutes, settings);
    };
    if start < now.plus_seconds(-60) {
        return Err(Refusal::StartInPast(start));
    }
    let latest = now.plus_seconds(settings.max_schedule_minutes as i64 * 60);
    if start > latest {
        return Err(Refusal::StartTooFar { start, max_minutes: settings.max_schedule_minutes });
    }
    activation_window(start.max(now), minutes, settings)
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
        let id = EntitlementId::parse(text)?;
        if id.resource() != project {
            return Err(Refusal::ProjectMismatch(text.clone()));
        }
        parsed.insert(id);
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

/// Checks the chosen reviewers: count within limits, not the requester, each a holder of the
/// same peer-approved entitlement. Returns them deduplicated.
pub fn reviewers(
    requester: &Email,
    chosen: &[Email],
    holders: &[Email],
    settings: &ActivationSettings,
) -> Result<Vec<Email>, Refusal> {
    let unique: BTreeSet<&Email> = chosen.iter().collect();
    if unique.contains(requester) {
        return Err(Refusal::SelfReview);
    }
    let count = unique.len();
    if (count as u64) < settings.min_reviewers || count as u64 > settings.max_reviewers {
        return Err(Refusal::ReviewerCount { count, min: settings.min_reviewers, max: settings.max_reviewers });
    }
    if let Some(stranger) = unique.iter().find(|reviewer| !holders.contains(reviewer)) {
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
        assert!(activation_window(at(0), 60, &settings).is_ok());
        assert_eq!(activation_window(at(0), 0, &settings), Err(Refusal::Duration { minutes: 0, max: 60 }));
        assert_eq!(activation_window(at(0), 61, &settings), Err(Refusal::Duration { minutes: 61, max: 60 }));
        let window = activation_window(at(0), 5, &settings).expect("valid");
        assert_eq!(window.duration_seconds(), 300);
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
        let chosen = reviewers(&alice, &[bob.clone(), bob.clone()], &holders(), &settings).expect("valid");
        assert_eq!(chosen, vec![bob.clone()]);
        assert_eq!(reviewers(&alice, &[bob.clone(), alice.clone()], &holders(), &settings), Err(Refusal::SelfReview));
        assert_eq!(
            reviewers(&alice, &[], &holders(), &settings),
            Err(Refusal::ReviewerCount { count: 0, min: 1, max: 2 })
        );
        let carol = email("carol@example.com");
        assert_eq!(
            reviewers(&alice, &[bob.clone(), dave.clone(), carol.clone()], &holders(), &settings),
            Err(Refusal::ReviewerCount { count: 3, min: 1, max: 2 })
        );
        assert_eq!(
            reviewers(&alice, std::slice::from_ref(&carol), &holders(), &settings),
            Err(Refusal::ReviewerNotEligible(carol))
        );
    }

    /// Alice's request for compute.admin on project-1, two approvals needed, Bob and Dave
    /// approved it: as the ledger holds it when the grant is about to be written.
    fn approved() -> crate::lifecycle::Record {
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

    fn grant(record: &crate::lifecycle::Record, fresh: &Fresh, settings: &ActivationSettings) -> Result<(), Refusal> {
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
