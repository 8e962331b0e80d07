//! `APPROVAL_POLICY`: how many distinct approvers a peer-approval request needs, whether they
//! must give a reason, and how long the access may last, by role and resource. A JSON array of
//! rules; the first that matches wins; no match means one approval, reason optional.
//!
//! ```json
//! [{"roles": ["roles/owner", "roles/iam.*"], "resources": ["projects/prod-*"],
//!   "approvals": 2, "approverReason": "required", "maxDuration": 60,
//!   "breakGlass": {"maxDuration": 30, "reviewWithin": 240}}]
//! ```
//!
//! `breakGlass` opens the emergency path for the rule's roles: granted at once, ratified after
//! the fact by the same quorum (`maxDuration` 60 and `reviewWithin` 1440 minutes if unset).
//! Roles without it have none.

use serde::Deserialize;

/// What a request for a role on a resource needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// Distinct approvers, 1 to 10.
    pub approvals: u32,
    pub approver_reason_required: bool,
    /// Longest activation, minutes; `None` leaves `ACTIVATION_TIMEOUT` in charge.
    pub max_duration_minutes: Option<u64>,
    /// The emergency path, if the rule opens one.
    pub break_glass: Option<BreakGlassRule>,
}

/// A rule's emergency path: how long an emergency grant may last, and how long its quorum has
/// to ratify it, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlassRule {
    pub max_duration_minutes: u64,
    pub review_within_minutes: u64,
}

impl Default for Requirement {
    fn default() -> Requirement {
        Requirement { approvals: 1, approver_reason_required: false, max_duration_minutes: None, break_glass: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalPolicy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    roles: Vec<String>,
    resources: Vec<String>,
    requirement: Requirement,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleText {
    roles: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default = "one")]
    approvals: i64,
    #[serde(default)]
    approver_reason: Option<String>,
    #[serde(default)]
    max_duration: Option<i64>,
    #[serde(default)]
    break_glass: Option<BreakGlassText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BreakGlassText {
    #[serde(default)]
    max_duration: Option<i64>,
    #[serde(default)]
    review_within: Option<i64>,
}

/// An emergency grant lasts an hour unless the rule says otherwise; its review is due within a
/// day; neither may be longer than a week.
const BREAK_GLASS_DEFAULT_MINUTES: i64 = 60;
const BREAK_GLASS_DEFAULT_REVIEW_MINUTES: i64 = 24 * 60;
/// The emergency grant's token carries the request and lives at most 12 hours (`signJwt`).
const BREAK_GLASS_MAX_MINUTES: i64 = 12 * 60 - 10;
const BREAK_GLASS_MAX_REVIEW_MINUTES: i64 = 7 * 24 * 60;

fn one() -> i64 {
    1
}

impl ApprovalPolicy {
    /// Parses the setting, reporting every problem at once.
    pub fn parse(text: &str) -> Result<ApprovalPolicy, Vec<String>> {
        if text.trim().is_empty() {
            return Ok(ApprovalPolicy::default());
        }
        let texts: Vec<serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| vec![format!("APPROVAL_POLICY must be a JSON array of rules: {e}")])?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (index, value) in texts.into_iter().enumerate() {
            let at = format!("APPROVAL_POLICY rule {}", index + 1);
            let rule: RuleText = match serde_json::from_value(value) {
                Ok(rule) => rule,
                Err(error) => {
                    problems.push(format!("{at}: {error}"));
                    continue;
                }
            };
            if rule.roles.is_empty() {
                problems.push(format!("{at}: roles must name at least one role pattern"));
            }
            for pattern in rule.roles.iter().chain(&rule.resources) {
                if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    problems.push(format!("{at}: '{pattern}' is not a pattern"));
                }
            }
            if !(1..=10).contains(&rule.approvals) {
                problems.push(format!("{at}: approvals must be from 1 to 10, not {}", rule.approvals));
            }
            let approver_reason_required = match rule.approver_reason.as_deref() {
                None | Some("optional") => false,
                Some("required") => true,
                Some(other) => {
                    problems.push(format!("{at}: approverReason must be required or optional, not '{other}'"));
                    false
                }
            };
            if let Some(minutes) = rule.max_duration
                && !(1..=7 * 24 * 60).contains(&minutes)
            {
                problems.push(format!("{at}: maxDuration must be from 1 to 10080 minutes, not {minutes}"));
            }
            let break_glass = rule.break_glass.map(|text| {
                let minutes = text.max_duration.unwrap_or(BREAK_GLASS_DEFAULT_MINUTES);
                if !(1..=BREAK_GLASS_MAX_MINUTES).contains(&minutes) {
                    problems.push(format!(
                        "{at}: breakGlass.maxDuration must be from 1 to {BREAK_GLASS_MAX_MINUTES} minutes, not {minutes}"
                    ));
                }
                let review = text.review_within.unwrap_or(BREAK_GLASS_DEFAULT_REVIEW_MINUTES);
                if !(1..=BREAK_GLASS_MAX_REVIEW_MINUTES).contains(&review) {
                    problems.push(format!(
                        "{at}: breakGlass.reviewWithin must be from 1 to {BREAK_GLASS_MAX_REVIEW_MINUTES} minutes, not {review}"
                    ));
                }
                BreakGlassRule {
                    max_duration_minutes: minutes.clamp(1, BREAK_GLASS_MAX_MINUTES) as u64,
                    review_within_minutes: review.clamp(1, BREAK_GLASS_MAX_REVIEW_MINUTES) as u64,
                }
            });
            rules.push(Rule {
                roles: rule.roles,
                resources: rule.resources,
                requirement: Requirement {
                    approvals: rule.approvals.clamp(1, 10) as u32,
                    approver_reason_required,
                    max_duration_minutes: rule.max_duration.map(|m| m.max(1) as u64),
                    break_glass,
                },
            });
        }
        if problems.is_empty() { Ok(ApprovalPolicy { rules }) } else { Err(problems) }
    }

    /// The requirement for `role` on `resource` (`projects/ID`): the first matching rule's.
    pub fn requirement(&self, role: &str, resource: &str) -> Requirement {
        self.rules
            .iter()
            .find(|rule| {
                rule.roles.iter().any(|p| matches(p, role))
                    && (rule.resources.is_empty() || rule.resources.iter().any(|p| matches(p, resource)))
            })
            .map(|rule| rule.requirement)
            .unwrap_or_default()
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(index) => rest = &rest[index + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_wins() {
        let policy = ApprovalPolicy::parse(
            r#"[{"roles": ["roles/owner", "roles/iam.*"], "resources": ["projects/prod-*"], "approvals": 2,
                 "approverReason": "required", "maxDuration": 60},
                {"roles": ["roles/*"], "approvals": 1}]"#,
        )
        .expect("valid");
        let strict = Requirement {
            approvals: 2,
            approver_reason_required: true,
            max_duration_minutes: Some(60),
            break_glass: None,
        };
        assert_eq!(policy.requirement("roles/iam.securityAdmin", "projects/prod-db"), strict);
        assert_eq!(policy.requirement("roles/owner", "projects/prod-"), strict);
        assert_eq!(policy.requirement("roles/owner", "projects/test-db"), Requirement::default());
        assert_eq!(ApprovalPolicy::default().requirement("roles/owner", "projects/p"), Requirement::default());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let problems = ApprovalPolicy::parse(
            r#"[{"roles": [], "approvals": 11}, {"roles": ["roles/x"], "approverReason": "maybe", "maxDuration": 0}, {"role": "x"}]"#,
        )
        .expect_err("invalid");
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(ApprovalPolicy::parse("{").is_err());
        assert_eq!(ApprovalPolicy::parse(""), Ok(ApprovalPolicy::default()));
    }

    #[test]
    fn a_break_glass_rule_has_short_defaults_and_bounds() {
        let policy = ApprovalPolicy::parse(
            r#"[{"roles": ["roles/compute.admin"], "approvals": 2, "breakGlass": {"maxDuration": 30, "reviewWithin": 240}},
                {"roles": ["roles/owner"], "breakGlass": {}}]"#,
        )
        .expect("valid");
        let rule = |role: &str| policy.requirement(role, "projects/p").break_glass;
        assert_eq!(
            rule("roles/compute.admin"),
            Some(BreakGlassRule { max_duration_minutes: 30, review_within_minutes: 240 })
        );
        assert_eq!(rule("roles/owner"), Some(BreakGlassRule { max_duration_minutes: 60, review_within_minutes: 1440 }));
        assert_eq!(rule("roles/viewer"), None, "no rule, no emergency path");
        let problems = ApprovalPolicy::parse(
            r#"[{"roles": ["roles/x"], "breakGlass": {"maxDuration": 0, "reviewWithin": 20000}},
                {"roles": ["roles/y"], "breakGlass": {"maxDuration": 720}},
                {"roles": ["roles/z"], "breakGlass": {"ratify": 1}}]"#,
        )
        .expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn patterns() {
        for (pattern, text, expected) in [
            ("roles/iam.*", "roles/iam.admin", true),
            ("roles/iam.*", "roles/iamx", false),
            ("*", "anything", true),
            ("projects/*-prod", "projects/a-prod", true),
            ("projects/*-prod", "projects/a-prod-2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
