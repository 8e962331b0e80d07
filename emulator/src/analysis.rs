//! Cloud Asset `analyzeIamPolicy`, computed from the held policies: inheritance down the
//! resource tree, nested group expansion, and condition evaluation good enough for the
//! conditions this system writes (eligibility markers are CONDITIONAL, activation windows
//! TRUE or FALSE at the access time, anything else CONDITIONAL). Without
//! `conditionContext.accessTime`, a condition on `request.time` is CONDITIONAL: Google gives
//! CONDITIONAL when "the condition expression contains variables that are either missing
//! input values or have not been supported by Policy Analyzer".
//!
//! Request rules (`google/cloud/asset/v1/asset_service.proto`): `expandGroups` is not allowed
//! with an identity selector; `expandResources` with a resource selector takes only a project
//! or lower ("Folder and organization resources cannot be used together with this option");
//! at most 10 roles and permissions in the access selector; an `accessTime` "must not be
//! earlier than the current time"; `executionTimeout` shorter than the work gives partial
//! results, flagged as not fully explored ([`cut_short`]).
//!
//! Simplification: every role is taken to grant every permission, so a permission selector
//! never filters anything out.

use std::collections::BTreeSet;

use common::condition::{Evaluation, evaluate_at, without_fraction};
use common::timestamp::Timestamp;
use serde_json::{Value, json};

use crate::google::GoogleError;
use crate::world::{Node, World};

const RESOURCE_PREFIX: &str = "//cloudresourcemanager.googleapis.com/";

/// The query, from `analysisQuery.*` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub scope: String,
    pub full_resource_name: Option<String>,
    pub identity: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub expand_groups: bool,
    pub expand_resources: bool,
    pub access_time: Option<Timestamp>,
    /// `executionTimeout`: how long the analysis may run before it answers with what it has.
    pub execution_timeout: Option<std::time::Duration>,
}

impl Query {
    /// Reads the query string of `GET /v1/{scope}:analyzeIamPolicy`.
    pub fn from_query_string(scope: &str, query: &str) -> Result<Query, GoogleError> {
        let mut parsed = Query { scope: scope.to_string(), ..Query::default() };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.to_string();
            match key.as_ref() {
                "analysisQuery.scope" if !value.is_empty() => parsed.scope = value,
                "analysisQuery.resourceSelector.fullResourceName" if !value.is_empty() => {
                    parsed.full_resource_name = Some(value)
                }
                "analysisQuery.identitySelector.identity" if !value.is_empty() => {
                    parsed.identity = Some(value.to_lowercase())
                }
                "analysisQuery.accessSelector.roles" => parsed.roles.push(value),
                "analysisQuery.accessSelector.permissions" => parsed.permissions.push(value),
                "analysisQuery.options.expandGroups" => parsed.expand_groups = value.eq_ignore_ascii_case("true"),
                "analysisQuery.options.expandResources" => parsed.expand_resources = value.eq_ignore_ascii_case("true"),
                "analysisQuery.conditionContext.accessTime" if !value.is_empty() => {
                    let trimmed = without_fraction(&value);
                    parsed.access_time = Some(
                        Timestamp::parse_rfc3339(&trimmed)
                            .ok_or_else(|| GoogleError::new(400, &format!("Invalid accessTime {value}")))?,
                    );
                }
                "executionTimeout" if !value.is_empty() => {
                    let seconds = value
                        .strip_suffix('s')
                        .and_then(|s| s.parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| GoogleError::new(400, &format!("Invalid executionTimeout {value}")))?;
                    parsed.execution_timeout = Some(std::time::Duration::from_secs_f64(seconds));
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// What a test may check about the query: its echo and its execution timeout.
    pub fn recorded(&self) -> Value {
        json!({
            "analysisQuery": echo(self),
            "executionTimeout": self.execution_timeout.map(|t| format!("{}s", t.as_secs_f64())),
        })
    }
}

/// The maximum number of roles and permissions in an access selector.
pub const MAX_ACCESS_SELECTIONS: usize = 10;

/// Marks an answer as Google gives it when `executionTimeout` ran out: partial, not fully
/// explored, with the reason among the non-critical errors. Nothing was finished, so nothing
/// is returned: the strictest partial answer.
pub fn cut_short(response: &mut Value) {
    response["fullyExplored"] = json!(false);
    response["mainAnalysis"]["fullyExplored"] = json!(false);
    response["mainAnalysis"]["analysisResults"] = json!([]);
    response["mainAnalysis"]["nonCriticalErrors"] = json!([{
        "code": "DEADLINE_EXCEEDED",
        "cause": "The analysis did not finish within executionTimeout: the results are partial",
    }]);
}

/// Answers the query in the wire shape of `AnalyzeIamPolicyResponse`.
pub fn analyze(world: &World, query: &Query, now: Timestamp) -> Result<Value, GoogleError> {
    crate::assets::scope(world, &query.scope)?;
    // "If IamPolicyAnalysisQuery.identity_selector is specified, the identity in the result
    // will be determined by the selector, and this flag is not allowed to set."
    if query.identity.is_some() && query.expand_groups {
        return Err(GoogleError::new(
            400,
            "options.expandGroups is not allowed to set when identitySelector is specified",
        ));
    }
    if query.identity.is_none() && query.full_resource_name.is_none() && query.roles.is_empty() {
        return Err(GoogleError::new(400, "At least one of resource, identity or access selector is required"));
    }
    if query.roles.len() + query.permissions.len() > MAX_ACCESS_SELECTIONS {
        return Err(GoogleError::new(
            400,
            &format!("At most {MAX_ACCESS_SELECTIONS} roles and permissions may be given in accessSelector"),
        ));
    }
    if query.access_time.is_some_and(|at| at.unix_seconds() < now.unix_seconds()) {
        return Err(GoogleError::new(400, "conditionContext.accessTime must not be earlier than the current time"));
    }
    if query.expand_resources
        && let Some(resource) = &query.full_resource_name
    {
        let name = resource.strip_prefix(RESOURCE_PREFIX).unwrap_or(resource);
        if name.starts_with("folders/") || name.starts_with("organizations/") {
            return Err(GoogleError::new(
                400,
                "options.expandResources supports only a project or lower in resourceSelector: folder and organization resources cannot be used together with this option",
            ));
        }
    }
    let scope_name = world.resolve(&query.scope).map(|n| n.name.clone()).unwrap_or_default();
    let selected_resource = match &query.full_resource_name {
        Some(full_name) => {
            let name = full_name.strip_prefix(RESOURCE_PREFIX).unwrap_or(full_name);
            let node = world
                .resolve(name)
                .filter(|n| world.ancestry(&n.name).iter().any(|a| a.name == scope_name))
                .ok_or_else(|| {
                    GoogleError::new(400, &format!("Resource {full_name} is not in scope {}", query.scope))
                })?;
            Some(node)
        }
        None => None,
    };
    // The nodes whose policies can matter: the selected resource and its ancestors (policies
    // are inherited), or every node in the scope.
    let candidates: Vec<&Node> = match selected_resource {
        Some(node) => world.ancestry(&node.name),
        None => world.subtree(&query.scope),
    };
    let identity_groups = query.identity.as_deref().map(|identity| world.groups_of(identity));

    let mut results = Vec::new();
    for node in candidates {
        for binding in &node.policy.bindings {
            if !query.roles.is_empty() && !query.roles.contains(&binding.role) {
                continue;
            }
            let identities = match (&query.identity, &identity_groups) {
                (Some(identity), Some(groups)) => {
                    let direct = binding.members.iter().any(|m| m.eq_ignore_ascii_case(identity));
                    // The selector's identity is analysed with all of its groups.
                    let through_group = binding
                        .members
                        .iter()
                        .any(|m| m.strip_prefix("group:").is_some_and(|g| groups.contains(&g.to_lowercase())));
                    if !(direct || through_group) {
                        continue;
                    }
                    vec![identity.clone()]
                }
                _ => expand_members(world, &binding.members, query.expand_groups),
            };
            let resources: Vec<String> = match selected_resource {
                Some(resource) => vec![full_name(resource)],
                None if query.expand_resources => world.subtree(&node.name).iter().map(|n| full_name(n)).collect(),
                None => vec![full_name(node)],
            };
            let mut acl = json!({
                "resources": resources.iter().map(|r| json!({"fullResourceName": r})).collect::<Vec<_>>(),
                "accesses": [{"role": binding.role}],
            });
            if let Some(condition) = &binding.condition {
                let value = match query.access_time {
                    Some(at) => evaluate(&condition.expression, at),
                    // No access time: a condition on the time has a missing input.
                    None if condition.expression.contains("request.time") => "CONDITIONAL",
                    None => evaluate(&condition.expression, now),
                };
                acl["conditionEvaluation"] = json!({"evaluationValue": value});
            }
            results.push(json!({
                "attachedResourceFullName": full_name(node),
                "iamBinding": binding,
                "accessControlLists": [acl],
                "identityList": {
                    "identities": identities.iter().map(|i| json!({"name": i})).collect::<Vec<_>>(),
                },
                "fullyExplored": true,
            }));
        }
    }
    Ok(json!({
        "mainAnalysis": {
            "analysisQuery": echo(query),
            "analysisResults": results,
            "fullyExplored": true,
        },
        "fullyExplored": true,
    }))
}

/// `TRUE`, `FALSE` or `CONDITIONAL` for an expression at `at`: the core's rule.
pub fn evaluate(expression: &str, at: Timestamp) -> &'static str {
    match evaluate_at(expression, at) {
        Evaluation::True => "TRUE",
        Evaluation::False => "FALSE",
        Evaluation::Conditional => "CONDITIONAL",
    }
}

fn expand_members(world: &World, members: &[String], expand_groups: bool) -> Vec<String> {
    let mut out: BTreeSet<String> = members.iter().map(|m| m.to_lowercase()).collect();
    if expand_groups {
        for member in members {
            if let Some(group) = member.strip_prefix("group:") {
                out.extend(world.users_in_group(group).into_iter().map(|u| format!("user:{u}")));
            }
        }
    }
    out.into_iter().collect()
}

fn full_name(node: &Node) -> String {
    format!("{RESOURCE_PREFIX}{}", node.name)
}

fn echo(query: &Query) -> Value {
    let mut echo = json!({"scope": query.scope, "options": {
        "expandGroups": query.expand_groups, "expandResources": query.expand_resources}});
    if let Some(resource) = &query.full_resource_name {
        echo["resourceSelector"] = json!({"fullResourceName": resource});
    }
    if let Some(identity) = &query.identity {
        echo["identitySelector"] = json!({"identity": identity});
    }
    if !query.roles.is_empty() || !query.permissions.is_empty() {
        echo["accessSelector"] = json!({"roles": query.roles, "permissions": query.permissions});
    }
    if let Some(at) = query.access_time {
        echo["conditionContext"] = json!({"accessTime": at.to_string()});
    }
    echo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sdk_and_gcloud_query_strings() {
        let query = Query::from_query_string(
            "projects/p",
            "analysisQuery.identitySelector.identity=user%3AAlice%40example.com&analysisQuery.options.expandGroups=true&analysisQuery.accessSelector.roles=roles%2Fa&analysisQuery.accessSelector.roles=roles%2Fb&analysisQuery.conditionContext.accessTime=2024-01-01T00%3A00%3A00.500Z&executionTimeout=30s&%24alt=json%3Benum-encoding%3Dint",
        )
        .expect("valid");
        assert_eq!(query.identity.as_deref(), Some("user:alice@example.com"));
        assert!(query.expand_groups && !query.expand_resources);
        assert_eq!(query.roles, ["roles/a", "roles/b"]);
        assert_eq!(query.access_time, Timestamp::parse_rfc3339("2024-01-01T00:00:00Z"));
    }
}
