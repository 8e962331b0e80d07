//! The lifecycle's rules one by one, and a seeded model of the door at work checked over many histories.

use super::*;
use crate::rules::{Action, Decision, Refusal, Standing, decide};
use std::collections::BTreeMap;

fn email(name: &str) -> Email {
    Email::parse(&format!("{name}@example.com")).expect("email")
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(seconds).expect("in range")
}

/// Alice asks Bob, Carol and Dave; two approvals needed; window 1000–2000, approvable until
/// 1500.
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
        break_glass: None,
        token: None,
        timeline: vec![Entry::Requested { at: 1000, actor: email("alice") }],
    }
}

fn jit() -> Record {
    Record {
        id: "jit-test".into(),
        activation_type: ActivationType::Jit,
        reviewers: Vec::new(),
        approvals_needed: 0,
        request_expiry: 1000,
        ..record()
    }
}

/// Alice broke glass: granted at once for 1000–2000, two of Bob, Carol and Dave ratify it
/// until 1600.
fn break_glass() -> Record {
    Record {
        id: "mpa-glass".into(),
        request_expiry: 2000,
        break_glass: Some(BreakGlass { review_deadline: 1600 }),
        ..record()
    }
}

const FRESH: Standing = Standing { may_review: true, administrator: false, beneficiary_eligible: true };

/// Decides and records, then carries out every step at once (no races, no failures).
fn apply(record: &mut Record, actor: &str, action: Action, now: i64) -> Result<State, Refusal> {
    if let Decision::Record(entry) = decide(record, &email(actor), &action, FRESH, at(now))? {
        record.timeline.push(entry);
    }
    settle(record, now);
    Ok(record.state(at(now)))
}

/// Runs the plan to its end, with every check passing and every write succeeding.
fn settle(record: &mut Record, now: i64) -> Option<Want> {
    let mut held = None;
    let mut checked = false;
    for _ in 0..10 {
        match next_step(record, at(now), held, checked) {
            Step::Check => checked = true,
            Step::Write(want) => held = Some(want),
            Step::Record(entry) => record.timeline.push(entry),
            Step::Done => return held,
        }
    }
    panic!("the plan did not finish: {record:?}");
}

fn approve() -> Action {
    Action::Approve { reason: String::new(), end: None }
}

#[test]
fn two_of_three_activates_on_the_second_approval_and_later_approvals_change_nothing() {
    let mut record = record();
    assert_eq!(record.state(at(1100)), State::ApprovalAwaited);
    assert_eq!(apply(&mut record, "bob", approve(), 1100), Ok(State::ApprovalAwaited));
    assert_eq!(apply(&mut record, "bob", approve(), 1101), Err(Refusal::AlreadyApprovedByYou));
    assert_eq!(apply(&mut record, "carol", approve(), 1103), Ok(State::Active));
    // Single use: a late approval is recorded and changes nothing else.
    let end = record.effective_end();
    assert_eq!(apply(&mut record, "dave", approve(), 1105), Ok(State::Active));
    assert_eq!((record.approvers().len(), record.effective_end()), (3, end));
    let deny = Action::Deny { reason: "late".into() };
    assert_eq!(apply(&mut record, "dave", deny, 1106), Err(Refusal::WrongState(State::Active)));
    assert_eq!(record.state(at(2000)), State::Expired);
}

#[test]
fn one_deny_ends_it_and_reasons_are_required_for_deny_and_revoke() {
    let mut record = record();
    let deny = |reason: &str| Action::Deny { reason: reason.into() };
    assert_eq!(apply(&mut record, "bob", deny("  "), 1100), Err(Refusal::ReasonRequired));
    apply(&mut record, "bob", approve(), 1100).expect("approved");
    assert_eq!(apply(&mut record, "dave", deny("not now"), 1101), Ok(State::Denied));
    assert_eq!(apply(&mut record, "carol", approve(), 1102), Err(Refusal::WrongState(State::Denied)));
}

#[test]
fn who_may_do_what() {
    let mut record = record();
    assert_eq!(apply(&mut record, "alice", approve(), 1100), Err(Refusal::SelfApproval));
    assert_eq!(apply(&mut record, "eve", approve(), 1100), Err(Refusal::NotAReviewer));
    let stale = Standing { may_review: false, ..FRESH };
    assert_eq!(decide(&record, &email("bob"), &approve(), stale, at(1100)), Err(Refusal::ApproverNotEligible));
    let orphaned = Standing { beneficiary_eligible: false, ..FRESH };
    assert_eq!(
        decide(&record, &email("bob"), &approve(), orphaned, at(1100)),
        Err(Refusal::BeneficiaryNotEligible(email("alice")))
    );
    let withdraw = Action::Withdraw { reason: String::new() };
    assert_eq!(apply(&mut record, "bob", withdraw, 1100), Err(Refusal::NotTheRequester));
    assert_eq!(apply(&mut record, "bob", Action::Revoke { reason: "x".into() }, 1100), Err(Refusal::MayNotRevoke));
    record.approver_reason_required = true;
    assert_eq!(apply(&mut record, "bob", approve(), 1100), Err(Refusal::ReasonRequired));
}

#[test]
fn beneficiary_cannot_approve_own_request() {
    let refused = decide(&record(), &email("alice"), &approve(), FRESH, at(1100));
    assert_eq!(refused, Err(Refusal::SelfApproval));
}

#[test]
fn reviewer_must_be_listed() {
    // Eligible (the catalog says so), but never asked.
    assert_eq!(decide(&record(), &email("eve"), &approve(), FRESH, at(1100)), Err(Refusal::NotAReviewer));
}

#[test]
fn approval_after_the_window_is_refused() {
    let mut record = record();
    record.request_expiry = 3000;
    assert_eq!(decide(&record, &email("bob"), &approve(), FRESH, at(2000)), Err(Refusal::WindowEnded(at(2000))));
}

#[test]
fn only_the_involved_may_view() {
    let record = record();
    assert!(record.is_party(&email("alice")) && record.is_party(&email("dave")));
    assert!(!record.is_party(&email("eve")));
}

#[test]
fn approvals_by_anyone_not_listed_count_for_nothing() {
    // A document writer appends approvals by people who were never asked, and by the
    // beneficiary: the request still awaits approval.
    let mut forged = record();
    for name in ["eve", "mallory", "alice"] {
        forged.timeline.push(Entry::Approved { at: 1100, actor: email(name), reason: String::new(), end: None });
    }
    assert_eq!(forged.state(at(1200)), State::ApprovalAwaited);
    assert!(forged.approvers().is_empty());
    // A forged outcome without the quorum before it grants nothing either.
    forged.timeline.push(Entry::Activated { at: 1150 });
    assert_eq!(forged.state(at(1200)), State::ApprovalAwaited);
}

#[test]
fn withdraw_before_approval_ends_early_after_and_revoke_is_open_until_the_binding_is_gone() {
    let mut pending = record();
    let withdraw = Action::Withdraw { reason: String::new() };
    assert_eq!(apply(&mut pending, "alice", withdraw.clone(), 1100), Ok(State::Withdrawn));

    let mut active = record();
    apply(&mut active, "bob", approve(), 1100).expect("approved");
    apply(&mut active, "carol", approve(), 1101).expect("approved");
    assert_eq!(apply(&mut active.clone(), "alice", withdraw, 1102), Ok(State::Ended));
    let revoke = Action::Revoke { reason: "incident over".into() };
    assert_eq!(apply(&mut active.clone(), "dave", revoke.clone(), 1102), Err(Refusal::MayNotRevoke));
    // Decided, not carried out yet: REVOKING, and the plan removes the binding first.
    let Decision::Record(entry) = decide(&active, &email("bob"), &revoke, FRESH, at(1102)).expect("revocable") else {
        panic!("a revocation records an entry");
    };
    active.timeline.push(entry);
    assert_eq!(active.state(at(1103)), State::Revoking);
    assert_eq!(next_step(&active, at(1103), None, false), Step::Write(Want::Nothing));
    // Revoking again finishes what is in progress; it is no refusal.
    assert_eq!(decide(&active, &email("bob"), &revoke, FRESH, at(1104)), Ok(Decision::Complete));
    settle(&mut active, 1104);
    assert_eq!(active.state(at(1105)), State::Revoked);
    assert_eq!(decide(&active, &email("bob"), &revoke, FRESH, at(1106)), Err(Refusal::WrongState(State::Revoked)));
    let admin = Standing { administrator: true, ..Standing::default() };
    let mut other = record();
    other.approvals_needed = 1;
    apply(&mut other, "bob", approve(), 1100).expect("approved");
    assert!(decide(&other, &email("root"), &revoke, admin, at(1101)).is_ok(), "an administrator may revoke");
}

#[test]
fn revoke_and_end_are_taken_while_the_binding_is_being_written() {
    let mut activating = record();
    activating.timeline.push(Entry::Approved { at: 1100, actor: email("bob"), reason: String::new(), end: None });
    activating.timeline.push(Entry::Approved { at: 1101, actor: email("carol"), reason: String::new(), end: None });
    assert_eq!(activating.state(at(1102)), State::Activating);
    let revoke = Action::Revoke { reason: "no".into() };
    assert!(matches!(decide(&activating, &email("bob"), &revoke, FRESH, at(1102)), Ok(Decision::Record(_))));
    let withdraw = Action::Withdraw { reason: String::new() };
    assert!(matches!(decide(&activating, &email("alice"), &withdraw, FRESH, at(1102)), Ok(Decision::Record(_))));
}

#[test]
fn a_revocation_decided_after_the_token_expired_still_goes_through() {
    // The request could be approved until 1500; the grant runs to 2000.
    let mut record = record();
    apply(&mut record, "bob", approve(), 1100).expect("approved");
    apply(&mut record, "carol", approve(), 1101).expect("active");
    assert_eq!(record.state(at(1800)), State::Active);
    let revoke = Action::Revoke { reason: "over".into() };
    assert_eq!(apply(&mut record, "bob", revoke, 1800), Ok(State::Revoked));
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
fn a_self_activation_is_activating_until_its_binding_is_written_after_a_check() {
    let mut record = jit();
    assert_eq!(record.state(at(1000)), State::Activating);
    assert_eq!(next_step(&record, at(1000), None, false), Step::Check, "eligibility is read first");
    assert_eq!(next_step(&record, at(1000), None, true), Step::Write(Want::Bindings { start: 1000, end: 2000 }));
    let held = Some(Want::Bindings { start: 1000, end: 2000 });
    assert_eq!(next_step(&record, at(1000), held, true), Step::Record(Entry::Activated { at: 1000 }));
    record.timeline.push(Entry::Activated { at: 1000 });
    assert_eq!(record.state(at(1000)), State::Active);
    assert_eq!(next_step(&record, at(1000), held, true), Step::Done);
    assert_eq!(next_step(&record, at(1000), None, false), Step::Done, "a reader of an active grant does nothing");
}

#[test]
fn a_write_the_record_no_longer_wants_is_undone() {
    // A stale writer wrote the binding, then found the request revoked and removed meanwhile.
    let mut record = jit();
    record.timeline.push(Entry::Activated { at: 1000 });
    record.timeline.push(Entry::Revoked { at: 1001, actor: email("root"), reason: "r".into() });
    record.timeline.push(Entry::BindingRemoved { at: 1002 });
    let held = Some(Want::Bindings { start: 1000, end: 2000 });
    assert_eq!(next_step(&record, at(1003), held, true), Step::Write(Want::Nothing));
    assert_eq!(next_step(&record, at(1003), Some(Want::Nothing), true), Step::Done);
}

#[test]
fn approvers_narrow_the_window_only_while_it_awaits_approval_and_the_earliest_end_wins() {
    let mut record = record();
    let narrow = |end: i64| Action::Approve { reason: String::new(), end: Some(end) };
    assert_eq!(apply(&mut record, "bob", narrow(2500), 1100), Err(Refusal::Lengthening), "never longer");
    assert_eq!(apply(&mut record, "bob", narrow(900), 1100), Err(Refusal::Lengthening), "not before it starts");
    apply(&mut record, "bob", narrow(1800), 1100).expect("narrowed");
    apply(&mut record, "carol", narrow(1900), 1101).expect("narrowed less");
    assert_eq!(record.effective_end(), 1800);
    assert_eq!(record.state(at(1799)), State::Active);
    assert_eq!(record.state(at(1800)), State::Expired);
    assert_eq!(apply(&mut record, "dave", narrow(1700), 1200), Err(Refusal::TooLateToNarrow(State::Active)));
    assert_eq!(record.effective_end(), 1800);
}

#[test]
fn self_approved_extensions_need_eligibility_and_are_written_at_once() {
    let mut record = jit();
    record.timeline.push(Entry::Activated { at: 1000 });
    let extend = |end: i64| Action::Extend { end };
    assert_eq!(apply(&mut record, "alice", extend(1500), 1100), Err(Refusal::NotLonger));
    assert_eq!(apply(&mut record, "bob", extend(2500), 1100), Err(Refusal::NotTheRequester));
    let lost = Standing { beneficiary_eligible: false, ..Standing::default() };
    assert_eq!(
        decide(&record, &email("alice"), &extend(2500), lost, at(1100)),
        Err(Refusal::BeneficiaryNotEligible(email("alice")))
    );
    let Ok(Decision::Record(entry)) = decide(&record, &email("alice"), &extend(2500), FRESH, at(1100)) else {
        panic!("extensible");
    };
    record.timeline.push(entry);
    assert_eq!(record.state(at(1100)), State::Extending, "no approval needed");
    assert_eq!(next_step(&record, at(1100), None, false), Step::Check);
    settle(&mut record, 1100);
    assert_eq!(record.effective_end(), 2500);
    assert_eq!(record.state(at(2200)), State::Active);
}

#[test]
fn peer_extensions_need_an_explicit_approval_that_names_the_end() {
    let mut mpa = record();
    apply(&mut mpa, "bob", approve(), 1100).expect("approved");
    apply(&mut mpa, "carol", approve(), 1101).expect("active");
    let extend = |end: i64| Action::Extend { end };
    assert_eq!(apply(&mut mpa, "alice", extend(2500), 1200), Ok(State::Active), "asked");
    assert_eq!(apply(&mut mpa, "alice", extend(2600), 1201), Err(Refusal::ExtensionPending));
    assert_eq!(mpa.effective_end(), 2000, "the grant runs on until the extension is approved");
    // The original request's approval (the mailed link, an old card) approves nothing more.
    assert_eq!(apply(&mut mpa, "dave", approve(), 1250), Ok(State::Active));
    assert_eq!((mpa.extension_ready(), mpa.extension_approvers().len()), (None, 0), "not the extension's");
    assert_eq!(apply(&mut mpa, "bob", approve(), 1251), Err(Refusal::AlreadyApprovedByYou));
    let approve_until = |end: i64| Action::ApproveExtension { reason: String::new(), end };
    assert_eq!(apply(&mut mpa, "bob", approve_until(2700), 1300), Err(Refusal::ExtensionEnd), "more than asked");
    assert_eq!(apply(&mut mpa, "bob", approve_until(2500), 1300), Ok(State::Active), "one of two");
    assert_eq!(apply(&mut mpa, "bob", approve_until(2500), 1301), Err(Refusal::AlreadyApprovedByYou));
    assert_eq!(apply(&mut mpa, "alice", approve_until(2500), 1301), Err(Refusal::SelfApproval));
    assert_eq!(apply(&mut mpa, "dave", approve_until(2400), 1302), Ok(State::Active), "narrowed and granted");
    assert_eq!(mpa.effective_end(), 2400);
    assert_eq!(mpa.pending_extension(), None);
    assert_eq!(apply(&mut mpa, "dave", approve_until(2400), 1303), Err(Refusal::NoExtensionPending));
    let revoke = Action::Revoke { reason: "over".into() };
    apply(&mut mpa, "bob", revoke, 1400).expect("revoked");
    assert_eq!(apply(&mut mpa, "alice", extend(2700), 1401), Err(Refusal::WrongState(State::Revoked)));
}

#[test]
fn a_failed_extension_leaves_the_grant_as_it_was() {
    let mut record = jit();
    record.timeline.push(Entry::Activated { at: 1000 });
    record.timeline.push(Entry::ExtensionRequested { at: 1100, actor: email("alice"), end: 2500 });
    assert_eq!(record.state(at(1100)), State::Extending);
    let entry = failure(&record, at(1101), "Google refused".into()).expect("a failure to record");
    assert!(matches!(entry, Entry::ExtensionFailed { .. }));
    record.timeline.push(entry);
    assert_eq!(record.state(at(1102)), State::Active);
    assert_eq!(record.effective_end(), 2000);
    assert_eq!(record.pending_extension(), None);
}

#[test]
fn a_superseded_grant_ends_once_its_binding_is_gone() {
    let mut record = jit();
    record.timeline.push(Entry::Activated { at: 1000 });
    record.timeline.push(Entry::Superseded { at: 1100, by: "jit-newer".into() });
    assert_eq!(record.state(at(1100)), State::Ending);
    assert_eq!(record.superseded_by(), Some("jit-newer"));
    record.timeline.push(Entry::BindingRemoved { at: 1100 });
    assert_eq!(record.state(at(1100)), State::Ended);
}

#[test]
fn the_ledger_keeps_a_record_until_its_latest_possible_end() {
    let mut record = jit();
    record.timeline.push(Entry::Activated { at: 1000 });
    assert_eq!(record.latest_end(), 2000);
    record.timeline.push(Entry::ExtensionRequested { at: 1100, actor: email("alice"), end: 5000 });
    assert_eq!(record.latest_end(), 5000, "a pending extension counts");
    record.timeline.push(Entry::Extended { at: 1100, end: 5000 });
    assert_eq!(record.latest_end(), 5000, "a granted one too");
}

#[test]
fn entries_read_and_write_as_the_ledger_stores_them() {
    let entry = Entry::Approved { at: 5, actor: email("bob"), reason: "ok".into(), end: None };
    let json = serde_json::to_value(&entry).expect("json");
    assert_eq!(json, serde_json::json!({"type": "APPROVED", "at": 5, "actor": "bob@example.com", "reason": "ok"}));
    assert_eq!(serde_json::from_value::<Entry>(json).expect("entry"), entry);
    let removed = serde_json::to_value(Entry::BindingRemoved { at: 7 }).expect("json");
    assert_eq!(removed, serde_json::json!({"type": "BINDING_REMOVED", "at": 7}));
    let record = record();
    let back: Record = serde_json::from_value(serde_json::to_value(&record).expect("json")).expect("record");
    assert_eq!(back, record);
}

fn arbitrary_entry() -> impl proptest::strategy::Strategy<Value = Entry> {
    use proptest::prelude::*;
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
        (0i64..3000).prop_map(|at| Entry::BindingRemoved { at }),
        (0i64..3000).prop_map(|at| Entry::ActivationFailed { at, reason: "r".into() }),
    ]
}

fn arbitrary_action() -> impl proptest::strategy::Strategy<Value = (String, Action, Standing)> {
    use proptest::prelude::*;
    let actor = prop::sample::select(vec!["alice", "bob", "carol", "dave", "eve"]).prop_map(String::from);
    let action = prop_oneof![
        Just(Action::Approve { reason: "r".into(), end: None }),
        Just(Action::Deny { reason: "r".into() }),
        Just(Action::Withdraw { reason: String::new() }),
        Just(Action::Revoke { reason: "r".into() }),
        Just(Action::Extend { end: 2500 }),
        Just(Action::ApproveExtension { reason: "r".into(), end: 2500 }),
    ];
    (actor, action, proptest::prelude::any::<(bool, bool, bool)>()).prop_map(|(actor, action, (r, a, e))| {
        (actor, action, Standing { may_review: r, administrator: a, beneficiary_eligible: e })
    })
}

proptest::proptest! {
    /// No action changes a request that has ended, whatever the timeline holds.
    #[test]
    fn no_transition_leaves_a_terminal_state(
        entries in proptest::collection::vec(arbitrary_entry(), 0..8),
        (actor, action, standing) in arbitrary_action(),
        now in 0i64..3000,
    ) {
        let mut record = record();
        record.timeline.extend(entries);
        if record.state(at(now)).is_terminal() {
            proptest::prop_assert!(decide(&record, &email(&actor), &action, standing, at(now)).is_err());
        }
    }

    /// Quorum counts distinct listed approvers other than the beneficiary, and one deny ends it.
    #[test]
    fn quorum_counts_distinct_approvers_never_the_beneficiary(
        approvers in proptest::collection::vec(proptest::sample::select(vec!["alice", "bob", "carol", "eve"]), 0..10),
        deny in proptest::prelude::any::<bool>(),
    ) {
        let mut record = record();
        for name in &approvers {
            record.timeline.push(Entry::Approved { at: 1100, actor: email(name), reason: String::new(), end: None });
        }
        let distinct: BTreeSet<&&str> = approvers.iter().filter(|n| **n == "bob" || **n == "carol").collect();
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
        proptest::prop_assert_eq!(record.state(at(1200)), expected);
        proptest::prop_assert_eq!(record.approvers().len(), distinct.len());
    }
}

#[test]
fn emergency_access_is_granted_at_once_and_ratified_by_the_quorum_after_the_fact() {
    let mut glass = break_glass();
    assert_eq!(glass.state(at(1000)), State::Activating, "no approval before the grant");
    settle(&mut glass, 1000);
    assert_eq!(glass.state(at(1001)), State::Active);
    assert_eq!(glass.review(at(1001)), Some(Review::Pending));
    assert!(glass.is_open(at(1001)));
    // Peer approval's actions are not the way: ratify or reject.
    let approve = Action::Approve { reason: String::new(), end: None };
    assert_eq!(apply(&mut glass.clone(), "bob", approve, 1002), Err(Refusal::BreakGlassReviewOnly));
    let ratify = || Action::Ratify { reason: "warranted".into() };
    assert_eq!(apply(&mut glass.clone(), "alice", ratify(), 1002), Err(Refusal::SelfReviewOfBreakGlass));
    assert_eq!(apply(&mut glass.clone(), "eve", ratify(), 1002), Err(Refusal::NotAReviewer));
    apply(&mut glass, "bob", ratify(), 1010).expect("ratified");
    assert_eq!(apply(&mut glass.clone(), "bob", ratify(), 1011), Err(Refusal::AlreadyApprovedByYou));
    assert_eq!(glass.review(at(1011)), Some(Review::Pending), "one of two");
    apply(&mut glass, "carol", ratify(), 1020).expect("ratified");
    assert_eq!(glass.review(at(1021)), Some(Review::Ratified));
    assert_eq!(glass.state(at(1021)), State::Active, "the grant's own end is unaffected");
    let reject = Action::Reject { reason: "no".into() };
    assert_eq!(apply(&mut glass.clone(), "dave", reject, 1030), Err(Refusal::ReviewClosed(Review::Ratified)));
    // Once its grant has ended and it is ratified, nothing is left open.
    assert!(!glass.is_open(at(2001)));
}

#[test]
fn a_rejection_revokes_a_live_emergency_grant_and_only_marks_an_ended_one() {
    let mut live = break_glass();
    settle(&mut live, 1000);
    let reject = || Action::Reject { reason: "not an emergency".into() };
    assert_eq!(
        apply(&mut live.clone(), "bob", Action::Reject { reason: " ".into() }, 1100),
        Err(Refusal::ReasonRequired)
    );
    let Decision::Record(entry) = decide(&live, &email("bob"), &reject(), FRESH, at(1100)).expect("rejected") else {
        panic!("a rejection records an entry");
    };
    live.timeline.push(entry);
    assert_eq!(live.state(at(1100)), State::Revoking, "revoked at once");
    assert_eq!(next_step(&live, at(1100), None, false), Step::Write(Want::Nothing));
    settle(&mut live, 1101);
    assert_eq!((live.state(at(1102)), live.review(at(1102))), (State::Revoked, Some(Review::Rejected)));
    // Ratifications after the rejection count for nothing.
    live.timeline.push(Entry::Ratified { at: 1103, actor: email("carol"), reason: String::new() });
    live.timeline.push(Entry::Ratified { at: 1104, actor: email("dave"), reason: String::new() });
    assert_eq!(live.review(at(1105)), Some(Review::Rejected));

    // An administrator may reject; an ended grant stays ended (no removal is needed).
    let mut ended = break_glass();
    ended.end = 1200;
    settle(&mut ended, 1000);
    let root = Standing { may_review: false, administrator: true, beneficiary_eligible: true };
    let Decision::Record(entry) = decide(&ended, &email("root"), &reject(), root, at(1300)).expect("rejected") else {
        panic!("a rejection records an entry");
    };
    ended.timeline.push(entry);
    assert_eq!((ended.state(at(1301)), ended.review(at(1301))), (State::Expired, Some(Review::Rejected)));
    let stranger = Standing { administrator: false, ..root };
    assert_eq!(decide(&break_glass(), &email("eve"), &reject(), stranger, at(1100)), Err(Refusal::MayNotReject));
}

#[test]
fn unratified_emergency_access_is_unreviewed_at_its_deadline_and_stays_open_until_escalated() {
    let mut glass = break_glass();
    glass.end = 1300;
    settle(&mut glass, 1000);
    apply(&mut glass, "bob", Action::Ratify { reason: String::new() }, 1100).expect("one ratification");
    assert_eq!(glass.review(at(1599)), Some(Review::Pending));
    assert!(glass.is_open(at(1400)), "expired, but its review is still pending");
    assert_eq!(glass.review(at(1600)), Some(Review::Unreviewed));
    assert!(glass.is_open(at(1600)), "not yet escalated");
    let late = Action::Ratify { reason: String::new() };
    assert_eq!(apply(&mut glass.clone(), "carol", late, 1601), Err(Refusal::ReviewClosed(Review::Unreviewed)));
    // A forged ratification after the deadline counts for nothing.
    glass.timeline.push(Entry::Ratified { at: 1650, actor: email("carol"), reason: String::new() });
    assert_eq!(glass.review(at(1700)), Some(Review::Unreviewed));
    glass.timeline.push(Entry::Escalated { at: 1700 });
    assert!(!glass.is_open(at(1700)));
    assert!(glass.latest_end() >= 1600, "kept at least until its review deadline");
    // A reviewer may revoke an emergency grant early, as an approver may any grant.
    let mut early = break_glass();
    settle(&mut early, 1000);
    assert_eq!(apply(&mut early, "dave", Action::Revoke { reason: "done".into() }, 1050), Ok(State::Revoked));
    assert_eq!(early.review(at(1051)), Some(Review::Pending), "the review goes on");
}

/// A pure model of the door at work: the ledger (with `updateTime` preconditions), IAM (one
/// binding window per request), and workers that carry out [`next_step`] one step at a time,
/// interleaved with people's decisions, the clock, eligibility changes, sweeps and crashes.
mod model {
    use super::*;

    /// SplitMix64: small, seeded, and the same on every machine, so a failing seed replays.
    pub struct Random(u64);

    impl Random {
        pub fn new(seed: u64) -> Random {
            Random(seed)
        }

        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
    }

    struct Stored {
        record: Record,
        version: u64,
    }

    /// A worker carrying out the plan for one request from the version it read.
    struct Worker {
        index: usize,
        seen: Record,
        version: u64,
        held: Option<Want>,
        checked: bool,
    }

    pub struct World {
        records: Vec<Stored>,
        iam: BTreeMap<usize, Want>,
        workers: Vec<Worker>,
        now: i64,
        beneficiary_eligible: bool,
        reviewer_eligible: BTreeMap<&'static str, bool>,
        /// The longest end a fresh check allowed for each request: no write may grant more.
        checked_end: BTreeMap<usize, i64>,
        pub log: Vec<String>,
    }

    const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "root"];

    impl World {
        pub fn new(random: &mut Random) -> World {
            let mut records = Vec::new();
            for i in 0..(1 + random.below(3)) {
                let mut record = match random.below(3) {
                    0 => super::record(),
                    1 => super::jit(),
                    _ => super::break_glass(),
                };
                record.id = format!("{}-{i}", &record.id[..3]);
                record.approvals_needed = if record.approvals_needed == 0 { 0 } else { 1 + random.below(2) as u32 };
                records.push(Stored { record, version: 0 });
            }
            let mut world = World {
                records,
                iam: BTreeMap::new(),
                workers: Vec::new(),
                now: 1000,
                beneficiary_eligible: true,
                reviewer_eligible: PEOPLE.iter().map(|p| (*p, true)).collect(),
                checked_end: BTreeMap::new(),
                log: Vec::new(),
            };
            // Self-activations start with a worker, as the door starts one at once.
            for index in 0..world.records.len() {
                world.spawn(index);
            }
            world
        }

        fn spawn(&mut self, index: usize) {
            let stored = &self.records[index];
            self.workers.push(Worker {
                index,
                seen: stored.record.clone(),
                version: stored.version,
                held: None,
                checked: false,
            });
        }

        fn standing(&self, actor: &str) -> Standing {
            Standing {
                may_review: self.reviewer_eligible[actor],
                administrator: actor == "root",
                beneficiary_eligible: self.beneficiary_eligible,
            }
        }

        /// The grant may be written: the beneficiary still eligible, enough approvers too.
        fn check(&self, record: &Record) -> bool {
            let eligible = |who: &&Email| self.reviewer_eligible[who.as_str().split('@').next().unwrap_or("")];
            let approvers = match record.state(at(self.now)) {
                State::Extending => record.extension_approvers().into_iter().filter(eligible).count(),
                _ => record.approvers().into_iter().filter(eligible).count(),
            };
            // Emergency access is ratified after the fact: no approver is counted before it.
            let approved = record.break_glass.is_some() || approvers as u32 >= record.approvals_needed;
            self.beneficiary_eligible && approved
        }

        fn commit(&mut self, index: usize, version: u64, entry: Entry) -> bool {
            let stored = &mut self.records[index];
            if stored.version != version {
                return false;
            }
            stored.record.timeline.push(entry);
            stored.version += 1;
            true
        }

        /// One step of worker `w`; `false` when it is done.
        fn step(&mut self, w: usize) -> bool {
            let now = at(self.now);
            let worker = &self.workers[w];
            let (index, version) = (worker.index, worker.version);
            match next_step(&worker.seen, now, worker.held, worker.checked) {
                Step::Done => return false,
                Step::Check => {
                    if self.check(&worker.seen) {
                        if let Want::Bindings { end, .. } = want(&worker.seen, now) {
                            let checked = self.checked_end.entry(index).or_insert(end);
                            *checked = (*checked).max(end);
                        }
                        self.workers[w].checked = true;
                    } else if let Some(entry) = failure(&worker.seen, now, "not eligible".into()) {
                        self.commit(index, version, entry);
                        self.reload(w);
                    }
                }
                Step::Write(want) => {
                    if let Want::Bindings { end, .. } = want {
                        let checked = self.checked_end.get(&index).copied().unwrap_or(i64::MIN);
                        assert!(
                            end <= checked,
                            "wrote until {end} with a check only until {checked}\n{}",
                            self.log.join("\n")
                        );
                    }
                    match want {
                        Want::Nothing => self.iam.remove(&index),
                        bindings => self.iam.insert(index, bindings),
                    };
                    self.workers[w].held = Some(want);
                }
                Step::Record(entry) => {
                    self.commit(index, version, entry);
                    self.reload(w);
                }
            }
            true
        }

        fn reload(&mut self, w: usize) {
            let index = self.workers[w].index;
            self.workers[w].seen = self.records[index].record.clone();
            self.workers[w].version = self.records[index].version;
        }

        /// A person's decision, recorded on the current version; a worker starts on it.
        fn act(&mut self, random: &mut Random) {
            let index = random.below(self.records.len() as u64) as usize;
            let actor = *random.pick(&PEOPLE);
            let record = &self.records[index].record;
            let end = record.effective_end() + 1 + random.below(800) as i64;
            let action = match random.below(8) {
                6 => Action::Ratify { reason: String::new() },
                7 => Action::Reject { reason: "r".into() },
                0 => Action::Approve { reason: "r".into(), end: (random.below(3) == 0).then_some(end.min(record.end)) },
                1 => Action::Deny { reason: "r".into() },
                2 => Action::Withdraw { reason: String::new() },
                3 => Action::Revoke { reason: "r".into() },
                4 => Action::Extend { end },
                _ => Action::ApproveExtension { reason: String::new(), end: record.pending_extension().unwrap_or(end) },
            };
            let decided = decide(record, &email(actor), &action, self.standing(actor), at(self.now));
            if let Ok(decision) = decided {
                self.log.push(format!("t={} {actor} {action:?} on {index}", self.now));
                if let Decision::Record(entry) = decision {
                    let version = self.records[index].version;
                    self.commit(index, version, entry);
                }
                self.spawn(index);
            }
        }

        /// The sweeper: every request's plan run to its end, then every binding of ours that
        /// the ledger does not want removed, and every live one set to the ledger's window.
        pub fn sweep(&mut self) {
            for index in 0..self.records.len() {
                self.spawn(index);
                let w = self.workers.len() - 1;
                // The sweeper's own reading of IAM: it knows what is there.
                self.workers[w].held = Some(self.iam.get(&index).copied().unwrap_or(Want::Nothing));
                let mut steps = 0;
                while self.step(w) {
                    steps += 1;
                    assert!(steps < 20, "the plan did not finish");
                }
                self.workers.remove(w);
            }
        }

        pub fn run(&mut self, random: &mut Random, steps: usize) {
            for _ in 0..steps {
                match random.below(10) {
                    0..=2 => self.act(random),
                    3..=6 if !self.workers.is_empty() => {
                        let w = random.below(self.workers.len() as u64) as usize;
                        if !self.step(w) {
                            self.workers.remove(w);
                        }
                    }
                    7 => self.now += 1 + random.below(300) as i64,
                    8 => {
                        if random.below(2) == 0 {
                            self.beneficiary_eligible = !self.beneficiary_eligible;
                        } else {
                            let who = *random.pick(&PEOPLE);
                            let flag = self.reviewer_eligible.entry(who).or_default();
                            *flag = !*flag;
                        }
                    }
                    _ if !self.workers.is_empty() => {
                        // A worker stops between steps: a crash, a timeout, an instance gone.
                        let w = random.below(self.workers.len() as u64) as usize;
                        self.log.push(format!("t={} worker on {} stops", self.now, self.workers[w].index));
                        self.workers.remove(w);
                    }
                    _ => self.sweep(),
                }
                self.always();
            }
        }

        /// At every moment: IAM never grants a window that no decision in the ledger allowed.
        fn always(&self) {
            for (index, want) in &self.iam {
                let record = &self.records[*index].record;
                if let Want::Bindings { start, end } = want {
                    // The longest end the ledger allowed at any point of its timeline.
                    let approved = (1..=record.timeline.len())
                        .map(|n| {
                            let prefix = Record { timeline: record.timeline[..n].to_vec(), ..record.clone() };
                            prefix.extension_ready().unwrap_or(0).max(prefix.effective_end())
                        })
                        .fold(record.end, i64::max);
                    assert_eq!(*start, record.start, "{}", self.log.join("\n"));
                    assert!(
                        *end <= approved,
                        "binding until {end}, approved until {approved}\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }

        /// After the sweep: a live grant has exactly its ledger window; any other request has
        /// no binding that still grants anything.
        pub fn converged(&self) {
            for (index, stored) in self.records.iter().enumerate() {
                let record = &stored.record;
                let state = record.state(at(self.now));
                let held = self.iam.get(&index).copied();
                let context =
                    || format!("request {index} {state:?} holds {held:?}\n{:#?}\n{}", record, self.log.join("\n"));
                match (want(record, at(self.now)), held) {
                    (Want::Bindings { .. }, held) => {
                        assert!(state.is_live(), "{}", context());
                        assert_eq!(held, Some(want(record, at(self.now))), "{}", context())
                    }
                    (Want::Nothing, None) => {}
                    (Want::Nothing, Some(Want::Bindings { end, .. })) => {
                        assert!(end <= self.now, "a closed request still grants: {}", context())
                    }
                    (Want::Nothing, Some(Want::Nothing)) => unreachable!(),
                }
                assert!(
                    !matches!(state, State::Activating | State::Extending | State::Revoking | State::Ending),
                    "{}",
                    context()
                );
                // A rejection before the grant's end leaves it without a binding.
                if record.review(at(self.now)) == Some(Review::Rejected) {
                    assert!(!state.is_live(), "a rejected emergency grant is live: {}", context());
                }
            }
        }
    }
}

/// Seeded random histories of the model; `LIFECYCLE_HISTORIES` sets how many (100,000 by
/// default), `LIFECYCLE_SEED` replays one.
#[test]
fn every_history_converges_to_what_the_ledger_says() {
    let replay = std::env::var("LIFECYCLE_SEED").ok().and_then(|s| s.parse::<u64>().ok());
    let histories: u64 = std::env::var("LIFECYCLE_HISTORIES").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seeds: Box<dyn Iterator<Item = u64>> = match replay {
        Some(seed) => Box::new(std::iter::once(seed)),
        None => Box::new(0..histories),
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| {
            let mut random = model::Random::new(seed);
            let mut world = model::World::new(&mut random);
            world.run(&mut random, 40);
            world.sweep();
            world.converged();
        });
        if let Err(panic) = outcome {
            eprintln!("history {seed} failed; replay with LIFECYCLE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}
