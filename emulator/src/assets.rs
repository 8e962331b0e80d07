//! Cloud Asset's policy and resource searches, computed from the held policies:
//! `batchGetEffectiveIamPolicies`, `searchAllIamPolicies` and `searchAllResources`, each with
//! the request rules Google documents for it.

use serde_json::{Value, json};

use crate::google::GoogleError;
use crate::paging::{PageRule, page, parameter, repeated};
use crate::world::{Node, World};

const RESOURCE_PREFIX: &str = "//cloudresourcemanager.googleapis.com/";

/// "A maximum of 20 resources' effective policies can be retrieved in a batch."
pub const MAX_EFFECTIVE_POLICY_NAMES: usize = 20;

/// Search page sizes: "capped at 500 even if a larger value is given".
const SEARCH_PAGES: PageRule = PageRule { default: 100, max: 500, refuse_above_max: false };

/// `organizations/NUMBER`, `folders/NUMBER`, `projects/ID` or `projects/NUMBER`, known here.
pub fn scope<'w>(world: &'w World, scope: &str) -> Result<&'w Node, GoogleError> {
    let well_formed = match scope.split_once('/') {
        Some(("organizations" | "folders", id)) => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        Some(("projects", id)) => !id.is_empty() && !id.contains('/'),
        _ => false,
    };
    if !well_formed {
        return Err(GoogleError::new(
            400,
            &format!("Invalid scope '{scope}': use organizations/NUMBER, folders/NUMBER or projects/ID"),
        ));
    }
    world.resolve(scope).ok_or_else(|| GoogleError::new(403, &format!("Scope {scope} is not accessible")))
}

fn full_name(node: &Node) -> String {
    format!("{RESOURCE_PREFIX}{}", node.name)
}

fn within(world: &World, node: &Node, scope: &Node) -> bool {
    world.ancestry(&node.name).iter().any(|ancestor| ancestor.name == scope.name)
}

/// `GET /v1/{scope}/effectiveIamPolicies:batchGet?names=…`
pub fn batch_get_effective_iam_policies(
    world: &World,
    scope_name: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let scope = scope(world, scope_name)?;
    let names = repeated(parameters, "names");
    if names.is_empty() {
        return Err(GoogleError::new(400, "names is required"));
    }
    if names.len() > MAX_EFFECTIVE_POLICY_NAMES {
        return Err(GoogleError::new(
            400,
            &format!("At most {MAX_EFFECTIVE_POLICY_NAMES} names are allowed in a batch, not {}", names.len()),
        ));
    }
    let mut results = Vec::new();
    for name in names {
        let short = name.strip_prefix(RESOURCE_PREFIX).ok_or_else(|| {
            GoogleError::new(
                400,
                &format!("{name} is not a full resource name (//cloudresourcemanager.googleapis.com/…)"),
            )
        })?;
        let node = world
            .resolve(short)
            .filter(|node| within(world, node, scope))
            .ok_or_else(|| GoogleError::new(400, &format!("{name} is not within scope {scope_name}")))?;
        // The resource first, then each ancestor up to the scope.
        let mut policies = Vec::new();
        for ancestor in world.ancestry(&node.name) {
            policies.push(json!({"attachedResource": full_name(ancestor), "policy": ancestor.policy}));
            if ancestor.name == scope.name {
                break;
            }
        }
        results.push(json!({"fullResourceName": name, "policies": policies}));
    }
    Ok(json!({"policyResults": results}))
}

/// What `policy:` terms of a search query name: members, with or without their type prefix.
fn policy_terms(query: &str) -> Result<Option<Vec<String>>, GoogleError> {
    let query = query.trim();
    if query.is_empty() {
        return Ok(None);
    }
    let unsupported = || {
        GoogleError::new(
            400,
            &format!("Invalid query '{query}': the emulator serves `policy:TERM` and `policy:(TERM OR TERM …)`"),
        )
    };
    let rest = query.strip_prefix("policy:").ok_or_else(unsupported)?.trim();
    let inner = match rest.strip_prefix('(') {
        Some(inner) => inner.strip_suffix(')').ok_or_else(unsupported)?,
        None => rest,
    };
    let terms: Vec<String> = inner.split(" OR ").map(|term| term.trim().trim_matches('"').to_lowercase()).collect();
    if terms.iter().any(|t| t.is_empty() || t.contains(' ') || t.contains('(') || t.contains(')')) {
        return Err(unsupported());
    }
    Ok(Some(terms))
}

fn member_matches(member: &str, term: &str) -> bool {
    let member = member.to_lowercase();
    if term.contains(':') { member == term } else { member.split_once(':').is_some_and(|(_, email)| email == term) }
}

/// `GET /v1/{scope}:searchAllIamPolicies`: policies on or below the scope, each with only the
/// bindings that match the query.
pub fn search_all_iam_policies(
    world: &World,
    scope_name: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let scope = scope(world, scope_name)?;
    order_by(parameters, &["resource", "assetType", "project"])?;
    let terms = policy_terms(parameter(parameters, "query").unwrap_or(""))?;
    let mut results = Vec::new();
    for node in world.subtree(&scope.name) {
        let bindings: Vec<&common::policy::Binding> = node
            .policy
            .bindings
            .iter()
            .filter(|binding| match &terms {
                None => true,
                Some(terms) => binding.members.iter().any(|m| terms.iter().any(|t| member_matches(m, t))),
            })
            .collect();
        if bindings.is_empty() {
            continue;
        }
        results.push(search_result(world, node, json!({"bindings": bindings, "version": node.policy.version})));
    }
    let (items, next) = page(&results, parameters, SEARCH_PAGES, world.settings.max_page_size)?;
    let mut body = json!({"results": items});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(body)
}

/// Where a node sits, in a search result's terms. Projects are named by number, as Cloud Asset
/// names them.
fn search_result(world: &World, node: &Node, policy: Value) -> Value {
    let ancestry = world.ancestry(&node.name);
    let folders: Vec<&str> =
        ancestry.iter().map(|n| n.name.as_str()).filter(|name| name.starts_with("folders/")).collect();
    let organization = ancestry.iter().map(|n| n.name.as_str()).find(|name| name.starts_with("organizations/"));
    let (resource, asset_type, project) = match &node.project_number {
        Some(number) => (
            format!("{RESOURCE_PREFIX}projects/{number}"),
            "cloudresourcemanager.googleapis.com/Project",
            format!("projects/{number}"),
        ),
        None if node.name.starts_with("folders/") => {
            (full_name(node), "cloudresourcemanager.googleapis.com/Folder", String::new())
        }
        None => (full_name(node), "cloudresourcemanager.googleapis.com/Organization", String::new()),
    };
    json!({
        "resource": resource,
        "assetType": asset_type,
        "project": project,
        "folders": folders,
        "organization": organization.unwrap_or_default(),
        "policy": policy,
    })
}

/// `GET /v1/{scope}:searchAllResources`: Resource Manager's own resources (projects, folders,
/// the organization) on or below the scope.
pub fn search_all_resources(
    world: &World,
    scope_name: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let scope = scope(world, scope_name)?;
    order_by(parameters, &["name", "assetType", "project", "displayName", "createTime", "updateTime", "state"])?;
    if !parameter(parameters, "query").unwrap_or("").trim().is_empty() {
        return Err(GoogleError::new(400, "the emulator serves searchAllResources without a query only"));
    }
    let types = repeated(parameters, "assetTypes");
    for asset_type in &types {
        let valid = asset_type.split_once(".googleapis.com/").is_some_and(|(service, kind)| {
            !service.is_empty() && !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')
        }) || *asset_type == ".*";
        if !valid {
            return Err(GoogleError::new(400, &format!("Invalid asset type '{asset_type}'")));
        }
    }
    let mut results = Vec::new();
    for node in world.subtree(&scope.name) {
        let mut result = search_result(world, node, Value::Null);
        let asset_type = result["assetType"].as_str().unwrap_or_default().to_string();
        if !types.is_empty() && !types.iter().any(|t| *t == asset_type || *t == ".*") {
            continue;
        }
        let object = result.as_object_mut().expect("an object");
        object.remove("policy");
        let resource = object.remove("resource").unwrap_or_default();
        object.insert("name".into(), resource);
        object.insert("displayName".into(), json!(node.display_name));
        object.insert("state".into(), json!("ACTIVE"));
        object.insert(
            "parentFullResourceName".into(),
            json!(node.parent.as_ref().map(|p| format!("{RESOURCE_PREFIX}{p}"))),
        );
        if node.project_number.is_some() {
            object
                .insert("additionalAttributes".into(), json!({"projectId": node.name.trim_start_matches("projects/")}));
        }
        results.push(result);
    }
    let (items, next) = page(&results, parameters, SEARCH_PAGES, world.settings.max_page_size)?;
    let mut body = json!({"results": items});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(body)
}

/// `orderBy` names only fields the method sorts by, each optionally followed by `DESC`.
fn order_by(parameters: &[(String, String)], fields: &[&str]) -> Result<(), GoogleError> {
    let order = parameter(parameters, "orderBy").unwrap_or("");
    for part in order.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let field = part.strip_suffix(" DESC").unwrap_or(part).trim();
        if !fields.contains(&field) {
            return Err(GoogleError::new(400, &format!("Invalid orderBy field '{field}'")));
        }
    }
    Ok(())
}
