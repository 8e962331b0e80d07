//! Activations: the time-bound IAM binding that grants an entitlement, how this system writes
//! it, and how it recognises its own bindings when it reads a policy back.
//!
//! Each binding names the request that granted it at the end of its condition's description
//! (` [request jit-…]`, the title stays the reference app's), so removing, extending and
//! reconciling a grant finds its own binding, never another grant's with the same window.
//!
//! Only the activation window and the eligible binding's resource condition go into the
//! condition expression. Everything a user typed (justification, emails) goes into the
//! description or the member, never into the expression, so no input can change what the
//! binding grants.

use crate::condition::{ResourceCondition, split_and};
use crate::email::Email;
use crate::entitlement::{EntitlementId, RoleName};
use crate::iam::{Binding, Expr};
use crate::justification::Justification;
use crate::timestamp::Timestamp;

/// The title that marks a binding as written by this system (and by the reference app).
pub const ACTIVATION_TITLE: &str = "JIT access activation";

/// IAM limits a condition's description to 256 characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// `[start, end)`, whole seconds, start before end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActivationWindow {
    start: Timestamp,
    end: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an activation must end after it starts ({start} is not before {end})")]
pub struct WindowError {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Where an activation window stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    NotYetStarted,
    Active,
    Ended,
}

/// Who approved an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    SelfApproved,
    ApprovedBy(Email),
}

/// A decided activation: everything needed to write its binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The request (`jit-…`, `mpa-…`) the binding belongs to.
    pub request: String,
    pub beneficiary: Email,
    pub entitlement: EntitlementId,
    pub window: ActivationWindow,
    pub approval: Approval,
    pub justification: Justification,
}

/// An activation binding read back from a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationBinding {
    pub member: Email,
    pub role: RoleName,
    pub resource_condition: Option<ResourceCondition>,
    pub window: ActivationWindow,
    /// The request it belongs to; `None` for bindings written before bindings named theirs
    /// (or by the reference app).
    pub request: Option<String>,
}

/// Whether `id` has the form of a request ID: `mpa-…` or `jit-…` and URL-safe characters.
pub fn is_request_id(id: &str) -> bool {
    (id.starts_with("mpa-") || id.starts_with("jit-"))
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const REQUEST_TAG: &str = " [request ";

impl ActivationWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Result<ActivationWindow, WindowError> {
        if start < end { Ok(ActivationWindow { start, end }) } else { Err(WindowError { start, end }) }
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }

    pub fn duration_seconds(&self) -> i64 {
        self.end.unix_seconds() - self.start.unix_seconds()
    }

    pub fn status(&self, now: Timestamp) -> WindowStatus {
        if now < self.start {
            WindowStatus::NotYetStarted
        } else if now < self.end {
            WindowStatus::Active
        } else {
            WindowStatus::Ended
        }
    }

    /// `(request.time >= timestamp("START") && request.time < timestamp("END"))`
    pub fn expression(&self) -> String {
        format!("(request.time >= timestamp(\"{}\") && request.time < timestamp(\"{}\"))", self.start, self.end)
    }
}

impl Activation {
    /// The binding to add to the project's policy.
    pub fn binding(&self) -> Binding {
        let window = self.window.expression();
        let expression = match self.entitlement.resource_condition() {
            None => window,
            Some(condition) => format!("{window} && ({condition})"),
        };
        let approval = match &self.approval {
            Approval::SelfApproved => "Self-approved".to_string(),
            Approval::ApprovedBy(approver) => format!("Approved by {approver}"),
        };
        // The request's tag always fits: the justification is what gets cut.
        let tag = format!("{REQUEST_TAG}{}]", self.request);
        let text: String = format!("{approval}, justification: {}", self.justification)
            .chars()
            .take(MAX_DESCRIPTION_CHARS.saturating_sub(tag.chars().count()))
            .collect();
        let description = format!("{text}{tag}");
        Binding {
            role: self.entitlement.role().as_str().to_string(),
            members: vec![self.beneficiary.iam_member()],
            condition: Some(Expr {
                expression,
                title: ACTIVATION_TITLE.to_string(),
                description,
                location: String::new(),
            }),
        }
    }
}

/// Recognises a binding this system wrote: our title, exactly one `user:` member, and an
/// expression that opens with our window (a start clause, then an end clause) ANDed with at
/// most a resource condition. Anything else (including hand-made time-bound bindings) is
/// `None` and is never touched.
///
/// Only the first two clauses are the window. Whatever follows is the eligible binding's
/// resource condition, time clauses included: eligibility that itself ends on a date
/// (`has({}.jitAccessConstraint) && request.time < timestamp("2030-…")`) keeps that clause in
/// every activation, and the activation must still be recognised as ours.
pub fn read_activation_binding(binding: &Binding) -> Option<ActivationBinding> {
    let condition = binding.condition.as_ref()?;
    if condition.title != ACTIVATION_TITLE {
        return None;
    }
    let [member] = binding.members.as_slice() else {
        return None;
    };
    let email = member.strip_prefix("user:").and_then(|e| Email::parse(e).ok())?;
    let role = RoleName::parse(&binding.role).ok()?;
    let clauses = split_and(&condition.expression).ok()?;
    let [first, second, others @ ..] = clauses.as_slice() else {
        return None;
    };
    let start = time_bound(first, "request.time >= timestamp(")?;
    let end = time_bound(second, "request.time < timestamp(")?;
    let window = ActivationWindow::new(start, end).ok()?;
    let request = condition
        .description
        .rsplit_once(REQUEST_TAG)
        .and_then(|(_, tail)| tail.strip_suffix(']'))
        .filter(|id| is_request_id(id))
        .map(str::to_string);
    Some(ActivationBinding {
        member: email,
        role,
        resource_condition: ResourceCondition::from_clauses(others),
        window,
        request,
    })
}

fn time_bound(clause: &str, prefix: &str) -> Option<Timestamp> {
    let quoted = clause.strip_prefix(prefix)?.strip_suffix(')')?;
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    Timestamp::parse_rfc3339(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::ProjectId;
    use crate::justification::JustificationPolicy;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn window() -> ActivationWindow {
        ActivationWindow::new(at(1_577_836_800), at(1_577_837_100)).expect("valid")
    }

    fn justification(text: &str) -> Justification {
        JustificationPolicy::new(".*", "").expect("pattern").check(text).expect("valid")
    }

    fn activation(condition: Option<&str>, approval: Approval, text: &str) -> Activation {
        Activation {
            request: "jit-test".into(),
            beneficiary: Email::parse("alice@example.com").expect("email"),
            entitlement: EntitlementId::new(
                ProjectId::parse("project-1").expect("project"),
                RoleName::parse("roles/compute.admin").expect("role"),
                condition.map(|c| ResourceCondition::parse(c).expect("condition")),
            ),
            window: window(),
            approval,
            justification: justification(text),
        }
    }

    const WINDOW: &str =
        "(request.time >= timestamp(\"2020-01-01T00:00:00Z\") && request.time < timestamp(\"2020-01-01T00:05:00Z\"))";

    #[test]
    fn self_approved_binding_has_exact_form() {
        let binding = activation(None, Approval::SelfApproved, "BUG-12345").binding();
        assert_eq!(binding.role, "roles/compute.admin");
        assert_eq!(binding.members, vec!["user:alice@example.com"]);
        let condition = binding.condition.expect("conditional");
        assert_eq!(condition.title, "JIT access activation");
        assert_eq!(condition.description, "Self-approved, justification: BUG-12345 [request jit-test]");
        assert_eq!(condition.expression, WINDOW);
    }

    #[test]
    fn approved_binding_keeps_the_resource_condition() {
        let bob = Email::parse("bob@example.com").expect("email");
        let binding = activation(Some("resource.type == 'a'"), Approval::ApprovedBy(bob), "BUG-1").binding();
        let condition = binding.condition.expect("conditional");
        assert_eq!(condition.description, "Approved by bob@example.com, justification: BUG-1 [request jit-test]");
        assert_eq!(condition.expression, format!("{WINDOW} && (resource.type == 'a')"));
    }

    #[test]
    fn user_input_never_changes_the_expression() {
        for text in [
            "\") || true || (\"",
            "x\\\" && request.time < timestamp(\"2099-01-01T00:00:00Z\")",
            "a && b || c",
            ")) || ((true",
            "'; DROP",
            "// comment",
        ] {
            let binding = activation(None, Approval::SelfApproved, text).binding();
            let condition = binding.condition.as_ref().expect("conditional");
            assert_eq!(condition.expression, WINDOW, "justification {text:?}");
            assert_eq!(condition.description, format!("Self-approved, justification: {text} [request jit-test]"));
            let read = read_activation_binding(&binding).expect("ours");
            assert_eq!(read.window, window());
            assert_eq!(read.request.as_deref(), Some("jit-test"), "a justification cannot forge the request");
            assert_eq!(read.resource_condition, None);
        }
    }

    #[test]
    fn newlines_cannot_reach_a_binding() {
        // The only way to a binding is a checked Justification, and the check refuses them.
        let policy = JustificationPolicy::new(".*", "").expect("pattern");
        assert!(policy.check("BUG-1\n) || true").is_err());
        assert!(policy.check("BUG-1\r\nX-Header: y").is_err());
    }

    #[test]
    fn description_is_cut_to_iams_limit() {
        let long = Email::parse(&format!("{}@example.com", "b".repeat(200))).expect("email");
        let binding = activation(None, Approval::ApprovedBy(long), &"j".repeat(100)).binding();
        assert_eq!(binding.condition.as_ref().expect("conditional").description.chars().count(), 256);
        assert_eq!(read_activation_binding(&binding).and_then(|b| b.request).as_deref(), Some("jit-test"));
    }

    #[test]
    fn reads_back_our_bindings() {
        let with_condition = activation(Some("(a) && (b == \"x && y\")"), Approval::SelfApproved, "j");
        let read = read_activation_binding(&with_condition.binding()).expect("ours");
        assert_eq!(read.member.as_str(), "alice@example.com");
        assert_eq!(read.role.as_str(), "roles/compute.admin");
        assert_eq!(read.resource_condition.as_ref().map(|c| c.as_str()), Some("(a) && (b == \"x && y\")"));
        assert_eq!(read.window, window());
        // The reference app's form, with doubled parentheses, is read too.
        assert_eq!(read.request.as_deref(), Some("jit-test"));
        // The reference app's form, with doubled parentheses and no request, is read too.
        let mut reference = with_condition.binding();
        let condition = reference.condition.as_mut().expect("conditional");
        condition.expression = format!("({WINDOW}) && ((a) && (b == \"x && y\"))");
        condition.description = "Self-approved, justification: j".into();
        assert_eq!(read_activation_binding(&reference), Some(ActivationBinding { request: None, ..read }));
    }

    #[test]
    fn does_not_read_bindings_that_are_not_ours() {
        let ours = activation(None, Approval::SelfApproved, "j").binding();
        let modify = |change: &dyn Fn(&mut Binding)| {
            let mut binding = ours.clone();
            change(&mut binding);
            binding
        };
        let cases = [
            ("other title", modify(&|b| b.condition.as_mut().expect("c").title = "Temporary".into())),
            ("no condition", modify(&|b| b.condition = None)),
            ("group member", modify(&|b| b.members = vec!["group:ops@example.com".into()])),
            ("two members", modify(&|b| b.members.push("user:bob@example.com".into()))),
            (
                "no end",
                modify(&|b| {
                    b.condition.as_mut().expect("c").expression =
                        "request.time >= timestamp(\"2020-01-01T00:00:00Z\")".into()
                }),
            ),
            (
                "no end, a resource condition instead",
                modify(&|b| {
                    b.condition.as_mut().expect("c").expression =
                        "request.time >= timestamp(\"2020-01-01T00:00:00Z\") && (a) && (b)".into()
                }),
            ),
            ("or", modify(&|b| b.condition.as_mut().expect("c").expression = format!("{WINDOW} || true"))),
            ("window not first", modify(&|b| b.condition.as_mut().expect("c").expression = format!("(a) && {WINDOW}"))),
            (
                "end before the start clause",
                modify(&|b| {
                    b.condition.as_mut().expect("c").expression = "(request.time < timestamp(\"2020-01-01T00:05:00Z\") && request.time >= timestamp(\"2020-01-01T00:00:00Z\"))".into()
                }),
            ),
            (
                "end before start",
                modify(&|b| {
                    b.condition.as_mut().expect("c").expression = "(request.time >= timestamp(\"2020-01-01T00:05:00Z\") && request.time < timestamp(\"2020-01-01T00:00:00Z\"))".into()
                }),
            ),
            (
                "other time format",
                modify(&|b| {
                    b.condition.as_mut().expect("c").expression = "(request.time >= timestamp(\"2020-01-01T00:00:00.000Z\") && request.time < timestamp(\"2020-01-01T00:05:00Z\"))".into()
                }),
            ),
        ];
        for (name, binding) in cases {
            assert_eq!(read_activation_binding(&binding), None, "{name}");
        }
    }

    #[test]
    fn time_clauses_of_the_eligible_binding_stay_in_the_resource_condition() {
        // Eligibility that ends on a date: its time clause is part of the resource condition.
        let eligible = "request.time < timestamp(\"2030-01-01T00:00:00Z\")";
        let binding = activation(Some(eligible), Approval::SelfApproved, "j").binding();
        let read = read_activation_binding(&binding).expect("ours");
        assert_eq!(read.window, window());
        assert_eq!(read.resource_condition.as_ref().map(|c| c.as_str()), Some(eligible));
        let both = "(request.time >= timestamp(\"2021-01-01T00:00:00Z\")) && (request.time < timestamp(\"2030-01-01T00:00:00Z\"))";
        let binding = activation(Some(both), Approval::SelfApproved, "j").binding();
        let read = read_activation_binding(&binding).expect("ours");
        assert_eq!((read.window, read.resource_condition.as_ref().map(|c| c.as_str())), (window(), Some(both)));
    }

    #[test]
    fn window_status_and_validity() {
        let window = window();
        assert_eq!(window.status(at(1_577_836_799)), WindowStatus::NotYetStarted);
        assert_eq!(window.status(at(1_577_836_800)), WindowStatus::Active);
        assert_eq!(window.status(at(1_577_837_100)), WindowStatus::Ended);
        assert_eq!(window.duration_seconds(), 300);
        assert!(ActivationWindow::new(at(10), at(10)).is_err());
        assert!(ActivationWindow::new(at(11), at(10)).is_err());
    }
}
