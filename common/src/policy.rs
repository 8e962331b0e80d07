//! IAM policies (version 3) in Google's JSON shape, and the pure updates this system makes
//! to them: add an activation binding, and sweep expired ones.
//!
//! The update functions take a policy and return a new one. They touch only bindings this
//! system wrote (our title and expression form, one `user:` member); every other binding,
//! the audit configs and the etag come out exactly as they went in. The adapter sends the
//! result back with the etag it read, so a concurrent writer makes it retry, never lose data.

use serde::{Deserialize, Serialize};

use crate::activation::{Activation, ActivationBinding, read_activation_binding};
use crate::timestamp::Timestamp;

/// Version 3 is required for conditional role bindings.
pub const CONDITIONAL_POLICY_VERSION: i32 = 3;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub version: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    /// Kept as JSON: this system never reads or changes audit configs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_configs: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
}

/// `google.type.Expr`, the condition of a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expr {
    #[serde(default)]
    pub expression: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
}

/// What adding an activation did to a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivationUpdate {
    /// The new policy to write; `replaced` earlier activations of the same entitlement were
    /// removed to stay clear of IAM's limit on conditional bindings per role and member.
    Changed { policy: Policy, replaced: usize },
    /// The same binding (same member, role and window) is already there, for example because
    /// a second reviewer approved the same request: nothing to write.
    AlreadyPresent,
}

/// Adds the activation's binding, replacing earlier activations of the same member, role and
/// resource condition. Hand-made bindings, even time-bound ones, are never removed.
pub fn add_activation(policy: &Policy, activation: &Activation) -> ActivationUpdate {
    let new_binding = activation.binding();
    let same_access = |binding: &Binding| {
        binding.role == new_binding.role
            && binding.members == new_binding.members
            && binding.condition.as_ref().map(|c| (&c.expression, &c.title))
                == new_binding.condition.as_ref().map(|c| (&c.expression, &c.title))
    };
    if policy.bindings.iter().any(same_access) {
        return ActivationUpdate::AlreadyPresent;
    }
    let is_earlier_activation = |binding: &Binding| {
        read_activation_binding(binding).is_some_and(|existing| {
            existing.member == activation.beneficiary
                && &existing.role == activation.entitlement.role()
                && existing.resource_condition.as_ref() == activation.entitlement.resource_condition()
        })
    };
    let mut bindings = Vec::with_capacity(policy.bindings.len() + 1);
    let mut replaced = 0;
    for binding in &policy.bindings {
        if is_earlier_activation(binding) {
            replaced += 1;
        } else {
            bindings.push(binding.clone());
        }
    }
    bindings.push(new_binding);
    ActivationUpdate::Changed {
        policy: Policy {
            version: CONDITIONAL_POLICY_VERSION,
            bindings,
            audit_configs: policy.audit_configs.clone(),
            etag: policy.etag.clone(),
        },
        replaced,
    }
}

/// Adds several activations to one policy, so that they are written in one atomic update.
/// `None` when every binding is already present.
pub fn add_activations(policy: &Policy, activations: &[Activation]) -> Option<(Policy, usize)> {
    let mut current: Option<Policy> = None;
    let mut replaced = 0;
    for activation in activations {
        let base = current.as_ref().unwrap_or(policy);
        if let ActivationUpdate::Changed { policy, replaced: removed } = add_activation(base, activation) {
            current = Some(policy);
            replaced += removed;
        }
    }
    current.map(|policy| (policy, replaced))
}

/// Removes activation bindings that ended at or before `ended_before`. Returns `None` when
/// there is nothing to remove, so the caller writes nothing.
pub fn remove_expired_activations(
    policy: &Policy,
    ended_before: Timestamp,
) -> Option<(Policy, Vec<ActivationBinding>)> {
    remove_activations(policy, |activation| activation.window.end() <= ended_before)
}

/// Removes the activation binding of one grant (member, role, resource condition and window),
/// when a grant is revoked or ended early. `None` when it is not there.
pub fn remove_grant(policy: &Policy, grant: &ActivationBinding) -> Option<(Policy, Vec<ActivationBinding>)> {
    remove_activations(policy, |activation| activation == grant)
}

/// Removes our activation bindings that `remove` selects; every other binding stays.
fn remove_activations(
    policy: &Policy,
    remove: impl Fn(&ActivationBinding) -> bool,
) -> Option<(Policy, Vec<ActivationBinding>)> {
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(policy.bindings.len());
    for binding in &policy.bindings {
        match read_activation_binding(binding) {
            Some(activation) if remove(&activation) => removed.push(activation),
            _ => kept.push(binding.clone()),
        }
    }
    if removed.is_empty() {
        return None;
    }
    let policy = Policy {
        version: CONDITIONAL_POLICY_VERSION,
        bindings: kept,
        audit_configs: policy.audit_configs.clone(),
        etag: policy.etag.clone(),
    };
    Some((policy, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{ActivationWindow, Approval};
    use crate::condition::ResourceCondition;
    use crate::email::Email;
    use crate::entitlement::{EntitlementId, ProjectId, RoleName};
    use crate::justification::JustificationPolicy;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn activation(user: &str, role: &str, condition: Option<&str>, start: i64, end: i64) -> Activation {
        Activation {
            beneficiary: Email::parse(user).expect("email"),
            entitlement: EntitlementId::new(
                ProjectId::parse("project-1").expect("project"),
                RoleName::parse(role).expect("role"),
                condition.map(|c| ResourceCondition::parse(c).expect("condition")),
            ),
            window: ActivationWindow::new(at(start), at(end)).expect("window"),
            approval: Approval::SelfApproved,
            justification: JustificationPolicy::new(".*", "").expect("pattern").check("BUG-1").expect("justification"),
        }
    }

    fn plain(role: &str, member: &str) -> Binding {
        Binding { role: role.into(), members: vec![member.into()], condition: None }
    }

    fn sample_policy() -> Policy {
        Policy {
            version: 1,
            bindings: vec![
                plain("roles/owner", "user:admin@example.com"),
                Binding {
                    role: "roles/compute.admin".into(),
                    members: vec!["user:alice@example.com".into(), "user:bob@example.com".into()],
                    condition: Some(Expr {
                        expression: "has({}.multiPartyApprovalConstraint)".into(),
                        title: "Eligible for peer-approved activation".into(),
                        ..Expr::default()
                    }),
                },
            ],
            audit_configs: vec![
                serde_json::json!({"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}),
            ],
            etag: "BwYAAAAAAAE=".into(),
        }
    }

    fn changed(update: ActivationUpdate) -> (Policy, usize) {
        match update {
            ActivationUpdate::Changed { policy, replaced } => (policy, replaced),
            ActivationUpdate::AlreadyPresent => panic!("expected a change"),
        }
    }

    #[test]
    fn adds_binding_and_keeps_everything_else() {
        let before = sample_policy();
        let new = activation("alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let (after, replaced) = changed(add_activation(&before, &new));
        assert_eq!(replaced, 0);
        assert_eq!(after.version, 3);
        assert_eq!(after.etag, before.etag);
        assert_eq!(after.audit_configs, before.audit_configs);
        assert_eq!(after.bindings[..2], before.bindings[..]);
        assert_eq!(after.bindings[2], new.binding());
    }

    #[test]
    fn replaces_earlier_activation_of_same_entitlement_only() {
        let earlier = activation("alice@example.com", "roles/compute.admin", None, 10, 20);
        let other_role = activation("alice@example.com", "roles/compute.viewer", None, 10, 20);
        let other_user = activation("bob@example.com", "roles/compute.admin", None, 10, 20);
        let other_condition = activation("alice@example.com", "roles/compute.admin", Some("a == 'b'"), 10, 20);
        let mut hand_made = earlier.binding();
        hand_made.condition.as_mut().expect("condition").title = "Temporary access for Alice".into();
        let mut policy = sample_policy();
        policy.bindings.extend([
            earlier.binding(),
            other_role.binding(),
            other_user.binding(),
            other_condition.binding(),
            hand_made.clone(),
        ]);
        let new = activation("alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let (after, replaced) = changed(add_activation(&policy, &new));
        assert_eq!(replaced, 1);
        assert!(!after.bindings.contains(&earlier.binding()));
        for kept in [other_role.binding(), other_user.binding(), other_condition.binding(), hand_made] {
            assert!(after.bindings.contains(&kept), "lost {kept:?}");
        }
    }

    #[test]
    fn binding_with_our_title_but_several_members_is_not_ours() {
        let earlier = activation("alice@example.com", "roles/compute.admin", None, 10, 20);
        let mut shared = earlier.binding();
        shared.members.push("user:bob@example.com".into());
        let mut policy = sample_policy();
        policy.bindings.push(shared.clone());
        let new = activation("alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let (after, replaced) = changed(add_activation(&policy, &new));
        assert_eq!(replaced, 0);
        assert!(after.bindings.contains(&shared));
    }

    #[test]
    fn same_binding_again_is_already_present() {
        let first = activation("alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let (policy, _) = changed(add_activation(&sample_policy(), &first));
        let mut second = first.clone();
        second.approval = Approval::ApprovedBy(Email::parse("carol@example.com").expect("email"));
        assert_eq!(add_activation(&policy, &second), ActivationUpdate::AlreadyPresent);
    }

    #[test]
    fn several_activations_go_into_one_policy() {
        let first = activation("alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let second = activation("alice@example.com", "roles/compute.viewer", None, 1_000, 4_600);
        let (after, replaced) = add_activations(&sample_policy(), &[first.clone(), second.clone()]).expect("changed");
        assert_eq!(replaced, 0);
        assert_eq!(after.bindings[2..], [first.binding(), second.binding()]);
        assert_eq!(add_activations(&after, &[first, second]), None);
    }

    #[test]
    fn sweeps_only_expired_activations() {
        let expired = activation("alice@example.com", "roles/compute.admin", None, 10, 20);
        let active = activation("bob@example.com", "roles/compute.admin", None, 10, 5_000);
        let mut hand_made = expired.binding();
        hand_made.condition.as_mut().expect("condition").title = "Until the audit ends".into();
        let mut policy = sample_policy();
        policy.bindings.extend([expired.binding(), active.binding(), hand_made.clone()]);
        let (after, removed) = remove_expired_activations(&policy, at(100)).expect("something to remove");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].member.as_str(), "alice@example.com");
        assert!(after.bindings.contains(&active.binding()));
        assert!(after.bindings.contains(&hand_made));
        assert_eq!(after.bindings.len(), policy.bindings.len() - 1);
        assert_eq!(remove_expired_activations(&after, at(100)), None);
    }

    #[test]
    fn wire_shape_is_googles() {
        let json = serde_json::json!({
            "version": 3,
            "etag": "BwYAAAAAAAE=",
            "bindings": [{"role": "roles/a", "members": ["user:x@example.com"],
                          "condition": {"expression": "true", "title": "t"}}],
            "auditConfigs": [{"service": "allServices"}]
        });
        let policy: Policy = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&policy).expect("serialises"), json);
    }

    fn arbitrary_binding() -> impl Strategy<Value = Binding> {
        let role = prop::sample::select(vec!["roles/compute.admin", "roles/owner", "roles/viewer"]);
        let member =
            prop::sample::select(vec!["user:alice@example.com", "user:bob@example.com", "group:ops@example.com"]);
        let title = prop::sample::select(vec!["", "JIT access activation", "Temporary", "jit access activation"]);
        let expression = prop::sample::select(vec![
            "",
            "has({}.jitAccessConstraint)",
            "(request.time >= timestamp(\"1970-01-01T00:00:10Z\") && request.time < timestamp(\"1970-01-01T00:00:20Z\"))",
            "(request.time >= timestamp(\"1970-01-01T00:00:10Z\") && request.time < timestamp(\"1970-01-01T01:00:00Z\")) && (a == 'b')",
            "request.time < timestamp(\"1970-01-01T00:00:20Z\")",
        ]);
        (role, prop::collection::vec(member, 1..3), title, expression, "[ -~]{0,12}").prop_map(
            |(role, members, title, expression, description)| Binding {
                role: role.into(),
                members: members.into_iter().map(String::from).collect(),
                condition: (!expression.is_empty() || !title.is_empty()).then(|| Expr {
                    expression: expression.into(),
                    title: title.into(),
                    description,
                    location: String::new(),
                }),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_binding_that_is_not_ours_is_lost_or_altered(
            bindings in prop::collection::vec(arbitrary_binding(), 0..24),
            user in prop::sample::select(vec!["alice@example.com", "bob@example.com"]),
            role in prop::sample::select(vec!["roles/compute.admin", "roles/owner"]),
            condition in prop::option::of(Just("a == 'b'")),
        ) {
            let policy = Policy { version: 1, bindings, audit_configs: vec![], etag: "e".into() };
            let new = activation(user, role, condition, 1_000, 4_600);
            let after = match add_activation(&policy, &new) {
                ActivationUpdate::AlreadyPresent => { prop_assert!(policy.bindings.contains(&new.binding())); return Ok(()); }
                ActivationUpdate::Changed { policy, .. } => policy,
            };
            prop_assert_eq!(&after.etag, &policy.etag);
            prop_assert_eq!(after.bindings.last(), Some(&new.binding()));
            // Every binding that is not one of our activations for this exact entitlement
            // is still there, equal field for field, in its original order.
            let expected_kept: Vec<&Binding> = policy.bindings.iter().filter(|binding| {
                !read_activation_binding(binding).is_some_and(|a| a.member == new.beneficiary
                    && &a.role == new.entitlement.role()
                    && a.resource_condition.as_ref() == new.entitlement.resource_condition())
            }).collect();
            let kept: Vec<&Binding> = after.bindings[..after.bindings.len() - 1].iter().collect();
            prop_assert_eq!(kept, expected_kept);
            for removed in policy.bindings.iter().filter(|b| !after.bindings.contains(b)) {
                let condition = removed.condition.as_ref().expect("removed bindings are conditional");
                prop_assert_eq!(condition.title.as_str(), "JIT access activation");
                prop_assert_eq!(removed.members.len(), 1);
            }
        }

        #[test]
        fn sweeping_removes_only_our_ended_bindings(
            bindings in prop::collection::vec(arbitrary_binding(), 0..24),
            cutoff in 0i64..5_000,
        ) {
            let policy = Policy { version: 3, bindings, audit_configs: vec![], etag: "e".into() };
            let (after, _) = remove_expired_activations(&policy, at(cutoff)).unwrap_or((policy.clone(), vec![]));
            for binding in &policy.bindings {
                let ours_and_ended = read_activation_binding(binding)
                    .is_some_and(|a| a.window.end() <= at(cutoff));
                prop_assert_eq!(after.bindings.contains(binding), !ours_and_ended, "{:?}", binding);
            }
        }
    }
}
