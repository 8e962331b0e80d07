//! Who holds what, decided from IAM policies: the bindings that apply to a project (its own
//! and its ancestors'), the principals a user acts as (the user and every group they are in,
//! nested ones included), and `now`. The Asset Inventory catalog reads policies and groups and
//! asks these functions; the agreement test holds them to what Policy Analyzer says.

use std::collections::BTreeSet;

use crate::activation::{ActivationBinding, read_activation_binding};
use crate::condition::{Evaluation, eligibility, evaluate_at, reviewer_condition};
use crate::email::Email;
use crate::entitlement::{Entitlement, ResourceId, eligible_entitlement, merge_entitlements};
use crate::iam::Binding;
use crate::timestamp::Timestamp;

/// The IAM members a user acts as: `user:EMAIL` and `group:G` for each of their groups, all
/// lowercase, as bindings are compared.
pub fn principals<'a>(user: &Email, groups: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    let mut principals: BTreeSet<String> = groups.into_iter().map(|g| format!("group:{}", g.to_lowercase())).collect();
    principals.insert(user.iam_member());
    principals
}

fn names_any(binding: &Binding, principals: &BTreeSet<String>) -> bool {
    binding.members.iter().any(|member| principals.contains(&member.to_lowercase()))
}

/// A binding whose time clauses have failed (eligibility that ended) grants nothing.
fn in_force(binding: &Binding, now: Timestamp) -> bool {
    binding.condition.as_ref().is_none_or(|c| evaluate_at(&c.expression, now) != Evaluation::False)
}

/// The user's entitlements on `project` (one per ID, self-approval winning) and their
/// activation bindings there, active or not.
pub fn user_entitlements<'a>(
    project: &ResourceId,
    user: &Email,
    principals: &BTreeSet<String>,
    bindings: impl IntoIterator<Item = &'a Binding>,
    now: Timestamp,
) -> (Vec<Entitlement>, Vec<ActivationBinding>) {
    let mut entitlements = Vec::new();
    let mut activations = Vec::new();
    for binding in bindings {
        if let Some(entitlement) = eligible_entitlement(project, binding) {
            if names_any(binding, principals) && in_force(binding, now) {
                entitlements.push(entitlement);
            }
        } else if let Some(activation) = read_activation_binding(binding).filter(|a| &a.member == user) {
            activations.push(activation);
        }
    }
    (merge_entitlements(entitlements), activations)
}

/// Who holds `entitlement` (same project, role, resource condition and activation type): the
/// users named directly, and the groups whose members hold it too.
pub fn holders<'a>(
    entitlement: &Entitlement,
    bindings: impl IntoIterator<Item = &'a Binding>,
    now: Timestamp,
) -> (BTreeSet<Email>, BTreeSet<String>) {
    members(bindings.into_iter().filter(|binding| {
        let same = eligible_entitlement(entitlement.id.resource(), binding).is_some_and(|e| &e == entitlement);
        same && in_force(binding, now)
    }))
}

/// The users and groups among the members of `bindings`.
fn members<'a>(bindings: impl IntoIterator<Item = &'a Binding>) -> (BTreeSet<Email>, BTreeSet<String>) {
    let mut users = BTreeSet::new();
    let mut groups = BTreeSet::new();
    for member in bindings.into_iter().flat_map(|binding| &binding.members) {
        let member = member.to_lowercase();
        if let Some(email) = member.strip_prefix("user:").and_then(|e| Email::parse(e).ok()) {
            users.insert(email);
        } else if let Some(group) = member.strip_prefix("group:") {
            groups.insert(group.to_string());
        }
    }
    (users, groups)
}

/// Who is designated to approve requests for `entitlement` (the reviewer marker on the same
/// role, project and resource condition): users named directly, and groups.
pub fn designated_approvers<'a>(
    entitlement: &Entitlement,
    bindings: impl IntoIterator<Item = &'a Binding>,
    now: Timestamp,
) -> (BTreeSet<Email>, BTreeSet<String>) {
    members(bindings.into_iter().filter(|binding| {
        let condition = binding.condition.as_ref().and_then(|c| reviewer_condition(&c.expression));
        let same = condition.is_some_and(|condition| {
            binding.role == entitlement.id.role().as_str() && condition.as_ref() == entitlement.id.resource_condition()
        });
        same && in_force(binding, now)
    }))
}

/// What one person may do with one entitlement, from the bindings that apply to its resource
/// and the principals they act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holding {
    /// Holds it with self-approval.
    pub jit: bool,
    /// Holds it with peer approval: may request it, and approve a peer's request.
    pub mpa: bool,
    /// A designated approver of it: may approve, never activate.
    pub designated: bool,
}

impl Holding {
    pub fn may_review(self) -> bool {
        self.mpa || self.designated
    }

    pub fn holds(self, kind: crate::condition::ActivationType) -> bool {
        match kind {
            crate::condition::ActivationType::Jit => self.jit,
            crate::condition::ActivationType::Mpa => self.mpa,
        }
    }
}

/// How `principals` (one person and their groups) stand towards `entitlement`.
pub fn standing<'a>(
    entitlement: &crate::entitlement::EntitlementId,
    principals: &BTreeSet<String>,
    bindings: impl IntoIterator<Item = &'a Binding>,
    now: Timestamp,
) -> Holding {
    let mut holding = Holding::default();
    let mpa = Entitlement { id: entitlement.clone(), activation_type: crate::condition::ActivationType::Mpa };
    for binding in bindings {
        if !names_any(binding, principals) || !in_force(binding, now) {
            continue;
        }
        if let Some(held) = eligible_entitlement(entitlement.resource(), binding).filter(|e| &e.id == entitlement) {
            match held.activation_type {
                crate::condition::ActivationType::Jit => holding.jit = true,
                crate::condition::ActivationType::Mpa => holding.mpa = true,
            }
        }
        let (users, groups) = designated_approvers(&mpa, std::iter::once(binding), now);
        let designated = principals.iter().any(|p| {
            p.strip_prefix("user:").is_some_and(|u| users.iter().any(|e| e.as_str() == u))
                || p.strip_prefix("group:").is_some_and(|g| groups.contains(g))
        });
        holding.designated |= designated;
    }
    holding
}

/// Whether any of `bindings` makes one of `principals` eligible for something now.
pub fn eligible_in<'a>(
    bindings: impl IntoIterator<Item = &'a Binding>,
    principals: &BTreeSet<String>,
    now: Timestamp,
) -> bool {
    bindings.into_iter().any(|binding| {
        names_any(binding, principals)
            && in_force(binding, now)
            && binding.condition.as_ref().is_some_and(|c| eligibility(&c.expression).is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::ActivationType;
    use crate::iam::Expr;

    fn binding(role: &str, members: &[&str], expression: Option<&str>) -> Binding {
        Binding {
            role: role.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            condition: expression.map(|e| Expr {
                expression: e.into(),
                title: "t".into(),
                description: String::new(),
                location: String::new(),
            }),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    #[test]
    fn entitlements_through_groups_and_only_while_in_force() {
        let project = ResourceId::parse("project-1").expect("project");
        let alice = Email::parse("alice@example.com").expect("email");
        let principals = principals(&alice, &["Ops@Example.com".to_string()]);
        let bindings = [
            binding("roles/a", &["group:ops@example.com"], Some("has({}.multiPartyApprovalConstraint)")),
            binding("roles/b", &["user:ALICE@example.com"], Some("has({}.jitAccessConstraint)")),
            binding("roles/c", &["user:bob@example.com"], Some("has({}.jitAccessConstraint)")),
            binding(
                "roles/d",
                &["user:alice@example.com"],
                Some("has({}.jitAccessConstraint) && request.time < timestamp(\"1970-01-01T00:01:40Z\")"),
            ),
            binding("roles/e", &["user:alice@example.com"], None),
        ];
        let (before, _) = user_entitlements(&project, &alice, &principals, &bindings, at(0));
        let roles: Vec<_> = before.iter().map(|e| (e.id.role().as_str(), e.activation_type)).collect();
        assert_eq!(
            roles,
            [("roles/a", ActivationType::Mpa), ("roles/b", ActivationType::Jit), ("roles/d", ActivationType::Jit)]
        );
        let (after, _) = user_entitlements(&project, &alice, &principals, &bindings, at(100));
        assert_eq!(after.len(), 2, "the time-bound eligibility ended");
        assert!(eligible_in(&bindings, &principals, at(100)));
        let stranger = super::principals(&Email::parse("eve@example.com").expect("email"), &[]);
        assert!(!eligible_in(&bindings, &stranger, at(0)));
    }

    #[test]
    fn holders_are_users_and_groups_of_the_same_entitlement_and_type() {
        let project = ResourceId::parse("project-1").expect("project");
        let bindings = [
            binding(
                "roles/a",
                &["user:bob@example.com", "group:ops@example.com"],
                Some("has({}.multiPartyApprovalConstraint)"),
            ),
            binding("roles/a", &["user:carol@example.com"], Some("has({}.jitAccessConstraint)")),
            binding(
                "roles/a",
                &["user:dave@example.com"],
                Some("has({}.multiPartyApprovalConstraint) && resource.type == 'x'"),
            ),
        ];
        let entitlement = eligible_entitlement(&project, &bindings[0]).expect("eligible");
        let (users, groups) = holders(&entitlement, &bindings, at(0));
        assert_eq!(users.iter().map(Email::as_str).collect::<Vec<_>>(), ["bob@example.com"]);
        assert_eq!(groups.into_iter().collect::<Vec<_>>(), ["ops@example.com"]);
    }
}
