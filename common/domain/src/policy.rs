//! The pure updates this system makes to IAM policies ([`crate::iam`]): set a grant's
//! bindings (write, extend, replace or remove them), and sweep expired ones.
//!
//! The update functions take a policy and return a new one. They touch only bindings this
//! system wrote (our title and expression form, one `user:` member); every other binding,
//! the audit configs and the etag come out exactly as they went in. The adapter sends the
//! result back with the etag it read, so a concurrent writer makes it retry, never lose data.

use crate::activation::{ActivationBinding, read_activation_binding};
use crate::timestamp::Timestamp;

pub use crate::iam::{Binding, CONDITIONAL_POLICY_VERSION, Expr, Policy};

/// Which of our bindings belong to one request: those that name it, and, for a grant
/// written before bindings named their request, those of the same member, role and resource
/// condition with exactly its window (`legacy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantKey {
    pub request: String,
    pub legacy: Vec<ActivationBinding>,
}

impl GrantKey {
    pub fn owns(&self, binding: &ActivationBinding) -> bool {
        match &binding.request {
            Some(request) => request == &self.request,
            None => self.legacy.iter().any(|old| ActivationBinding { request: None, ..old.clone() } == *binding),
        }
    }
}

/// Makes `grant`'s bindings exactly `bindings` (none removes the grant), and removes those of
/// every `superseded` grant in the same write. `None` when the policy holds that already, so
/// the caller writes nothing. Every binding that belongs to no named grant stays as it was.
pub fn set_grant(
    policy: &Policy,
    grant: &GrantKey,
    bindings: &[Binding],
    superseded: &[GrantKey],
) -> Option<(Policy, Vec<ActivationBinding>)> {
    let mut kept = Vec::with_capacity(policy.bindings.len() + bindings.len());
    let mut mine = Vec::new();
    let mut removed = Vec::new();
    for binding in &policy.bindings {
        match read_activation_binding(binding) {
            Some(ours) if grant.owns(&ours) => mine.push(binding),
            Some(ours) if superseded.iter().any(|key| key.owns(&ours)) => removed.push(ours),
            _ => kept.push(binding.clone()),
        }
    }
    let same = removed.is_empty() && mine.len() == bindings.len() && bindings.iter().all(|b| mine.contains(&b));
    if same {
        return None;
    }
    for binding in mine {
        removed.extend(read_activation_binding(binding));
    }
    kept.extend(bindings.iter().cloned());
    Some((with_bindings(policy, kept), removed))
}

/// Removes activation bindings that ended at or before `ended_before`. Returns `None` when
/// there is nothing to remove, so the caller writes nothing.
pub fn remove_expired_activations(
    policy: &Policy,
    ended_before: Timestamp,
) -> Option<(Policy, Vec<ActivationBinding>)> {
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(policy.bindings.len());
    for binding in &policy.bindings {
        match read_activation_binding(binding) {
            Some(activation) if activation.window.end() <= ended_before => removed.push(activation),
            _ => kept.push(binding.clone()),
        }
    }
    if removed.is_empty() {
        return None;
    }
    Some((with_bindings(policy, kept), removed))
}

/// The policy with other bindings, its audit configs and etag as they were, at version 3.
fn with_bindings(policy: &Policy, bindings: Vec<Binding>) -> Policy {
    Policy {
        version: CONDITIONAL_POLICY_VERSION,
        bindings,
        audit_configs: policy.audit_configs.clone(),
        etag: policy.etag.clone(),
    }
}

/// The activation bindings on a policy that belong to some request, by request.
pub fn grants(policy: &Policy) -> std::collections::BTreeMap<String, Vec<ActivationBinding>> {
    let mut grants = std::collections::BTreeMap::<String, Vec<ActivationBinding>>::new();
    for binding in policy.bindings.iter().filter_map(read_activation_binding) {
        if let Some(request) = binding.request.clone() {
            grants.entry(request).or_default().push(binding);
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{Activation, ActivationWindow, Approval};
    use crate::condition::ResourceCondition;
    use crate::email::Email;
    use crate::entitlement::{EntitlementId, ProjectId, RoleName};
    use crate::justification::JustificationPolicy;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn activation(request: &str, user: &str, role: &str, condition: Option<&str>, start: i64, end: i64) -> Activation {
        Activation {
            request: request.into(),
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

    fn key(request: &str) -> GrantKey {
        GrantKey { request: request.into(), legacy: Vec::new() }
    }

    fn sample_policy() -> Policy {
        Policy {
            version: 1,
            bindings: vec![
                Binding { role: "roles/owner".into(), members: vec!["user:admin@example.com".into()], condition: None },
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

    #[test]
    fn adds_a_grant_and_keeps_everything_else() {
        let before = sample_policy();
        let new = activation("jit-a", "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let (after, removed) = set_grant(&before, &key("jit-a"), &[new.binding()], &[]).expect("changed");
        assert!(removed.is_empty());
        assert_eq!(after.version, 3);
        assert_eq!(after.etag, before.etag);
        assert_eq!(after.audit_configs, before.audit_configs);
        assert_eq!(after.bindings[..2], before.bindings[..]);
        assert_eq!(after.bindings[2], new.binding());
        assert_eq!(set_grant(&after, &key("jit-a"), &[new.binding()], &[]), None, "written already");
    }

    #[test]
    fn each_grant_owns_its_binding_whatever_the_window() {
        // A grant scheduled for tomorrow and one active now, same person, role and condition.
        let now = activation("jit-now", "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let tomorrow = activation("jit-tomorrow", "alice@example.com", "roles/compute.admin", None, 90_000, 93_600);
        let (policy, _) = set_grant(&sample_policy(), &key("jit-now"), &[now.binding()], &[]).expect("changed");
        let (policy, removed) = set_grant(&policy, &key("jit-tomorrow"), &[tomorrow.binding()], &[]).expect("changed");
        assert!(removed.is_empty(), "tomorrow's grant removes nothing of today's");
        assert!(policy.bindings.contains(&now.binding()) && policy.bindings.contains(&tomorrow.binding()));
        // Extending today's grant rewrites its binding alone; removing it leaves tomorrow's.
        let longer = activation("jit-now", "alice@example.com", "roles/compute.admin", None, 1_000, 8_000);
        let (policy, removed) = set_grant(&policy, &key("jit-now"), &[longer.binding()], &[]).expect("changed");
        assert_eq!(removed.len(), 1);
        assert!(policy.bindings.contains(&longer.binding()) && !policy.bindings.contains(&now.binding()));
        let (policy, removed) = set_grant(&policy, &key("jit-now"), &[], &[]).expect("changed");
        assert_eq!(removed[0].window.end(), at(8_000));
        assert_eq!(policy.bindings.last(), Some(&tomorrow.binding()));
        assert_eq!(set_grant(&policy, &key("jit-now"), &[], &[]), None, "gone already");
    }

    #[test]
    fn a_new_grant_replaces_the_one_it_supersedes_in_one_write() {
        let old = activation("jit-old", "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let other = activation("jit-other", "bob@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let mut policy = sample_policy();
        policy.bindings.extend([old.binding(), other.binding()]);
        let new = activation("jit-new", "alice@example.com", "roles/compute.admin", None, 2_000, 5_600);
        let (after, removed) = set_grant(&policy, &key("jit-new"), &[new.binding()], &[key("jit-old")]).expect("x");
        assert_eq!(removed.iter().map(|b| b.request.as_deref()).collect::<Vec<_>>(), [Some("jit-old")]);
        assert!(after.bindings.contains(&other.binding()) && after.bindings.contains(&new.binding()));
        assert!(!after.bindings.contains(&old.binding()));
    }

    #[test]
    fn a_grant_from_before_bindings_named_their_request_is_found_by_its_exact_window() {
        let old = activation("jit-old", "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let mut untagged = old.binding();
        untagged.condition.as_mut().expect("condition").description = "Self-approved, justification: x".into();
        let other_window = activation("jit-old", "alice@example.com", "roles/compute.admin", None, 1_000, 9_999);
        let mut other_untagged = other_window.binding();
        other_untagged.condition.as_mut().expect("condition").description = "Approved by bob".into();
        let mut policy = sample_policy();
        policy.bindings.extend([untagged.clone(), other_untagged.clone()]);
        let legacy = read_activation_binding(&old.binding()).expect("ours");
        let grant = GrantKey { request: "jit-old".into(), legacy: vec![legacy] };
        let (after, removed) = set_grant(&policy, &grant, &[], &[]).expect("removed");
        assert_eq!(removed.len(), 1);
        assert!(!after.bindings.contains(&untagged) && after.bindings.contains(&other_untagged));
    }

    #[test]
    fn binding_with_our_title_but_several_members_is_not_ours() {
        let earlier = activation("jit-a", "alice@example.com", "roles/compute.admin", None, 10, 20);
        let mut shared = earlier.binding();
        shared.members.push("user:bob@example.com".into());
        let mut policy = sample_policy();
        policy.bindings.push(shared.clone());
        let (after, removed) = set_grant(&policy, &key("jit-a"), &[], &[]).map_or((policy.clone(), vec![]), |x| x);
        assert!(removed.is_empty());
        assert!(after.bindings.contains(&shared));
    }

    #[test]
    fn several_bindings_of_one_grant_go_into_one_policy() {
        let first = activation("jit-a", "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
        let second = activation("jit-a", "alice@example.com", "roles/compute.viewer", None, 1_000, 4_600);
        let both = [first.binding(), second.binding()];
        let (after, _) = set_grant(&sample_policy(), &key("jit-a"), &both, &[]).expect("changed");
        assert_eq!(after.bindings[2..], both);
        assert_eq!(set_grant(&after, &key("jit-a"), &both, &[]), None);
        assert_eq!(grants(&after)["jit-a"].len(), 2);
    }

    #[test]
    fn sweeps_only_expired_activations() {
        let expired = activation("jit-a", "alice@example.com", "roles/compute.admin", None, 10, 20);
        let active = activation("jit-b", "bob@example.com", "roles/compute.admin", None, 10, 5_000);
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
        let description =
            prop::sample::select(vec!["", "x", "x [request jit-a]", "y [request jit-b]", "[request mpa-c]"]);
        (role, prop::collection::vec(member, 1..3), title, expression, description).prop_map(
            |(role, members, title, expression, description)| Binding {
                role: role.into(),
                members: members.into_iter().map(String::from).collect(),
                condition: (!expression.is_empty() || !title.is_empty()).then(|| Expr {
                    expression: expression.into(),
                    title: title.into(),
                    description: description.into(),
                    location: String::new(),
                }),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_binding_of_another_grant_or_not_ours_is_lost_or_altered(
            bindings in prop::collection::vec(arbitrary_binding(), 0..24),
            request in prop::sample::select(vec!["jit-a", "jit-b", "mpa-c"]),
            superseded in prop::option::of(prop::sample::select(vec!["jit-a", "jit-b"])),
            remove in any::<bool>(),
        ) {
            let policy = Policy { version: 1, bindings, audit_configs: vec![], etag: "e".into() };
            let new = activation(request, "alice@example.com", "roles/compute.admin", None, 1_000, 4_600);
            let wanted = if remove { vec![] } else { vec![new.binding()] };
            let others: Vec<GrantKey> = superseded.into_iter().filter(|s| *s != request).map(key).collect();
            let Some((after, _)) = set_grant(&policy, &key(request), &wanted, &others) else {
                return Ok(());
            };
            prop_assert_eq!(&after.etag, &policy.etag);
            // Every binding that belongs to neither grant is still there, equal field for
            // field, in its original order, and the grant holds exactly what was asked.
            let named = |binding: &Binding| read_activation_binding(binding).is_some_and(|ours| {
                key(request).owns(&ours) || others.iter().any(|k| k.owns(&ours))
            });
            let expected_kept: Vec<&Binding> = policy.bindings.iter().filter(|b| !named(b)).collect();
            let kept: Vec<&Binding> = after.bindings[..after.bindings.len() - wanted.len()].iter().collect();
            prop_assert_eq!(kept, expected_kept);
            prop_assert_eq!(&after.bindings[after.bindings.len() - wanted.len()..], &wanted[..]);
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
