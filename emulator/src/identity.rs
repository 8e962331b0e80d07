//! Cloud Identity's groups API, the calls the catalog makes: `groups:lookup`,
//! `memberships.list`, `memberships:searchDirectGroups`, and the transitive searches, which an
//! organization without Workspace Enterprise or Cloud Identity Premium is refused (403).

use serde_json::{Value, json};

use crate::google::GoogleError;
use crate::paging::{PageRule, page, parameter};
use crate::world::World;

/// `memberships.list`: 200 by default; at most 1000 in the BASIC view, 500 in FULL.
const LIST_BASIC: PageRule = PageRule { default: 200, max: 1000, refuse_above_max: true };
const LIST_FULL: PageRule = PageRule { default: 50, max: 500, refuse_above_max: true };
/// The searches: "The default page size is 200 (max 1000)."
const SEARCH: PageRule = PageRule { default: 200, max: 1000, refuse_above_max: true };

const FORUM_LABEL: &str = "cloudidentity.googleapis.com/groups.discussion_forum";

/// A stable opaque ID for an email, as Cloud Identity's `groups/ID` and `users/ID`.
pub fn opaque_id(email: &str) -> String {
    let hash = email
        .to_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

fn group_name(email: &str) -> String {
    format!("groups/{}", opaque_id(email))
}

/// The group email behind `groups/ID`.
fn group_email(world: &World, name: &str) -> Result<String, GoogleError> {
    let id = name
        .strip_prefix("groups/")
        .filter(|id| !id.is_empty() && *id != "-")
        .ok_or_else(|| GoogleError::new(400, &format!("Invalid parent '{name}': expected groups/GROUP_ID")))?;
    world
        .groups()
        .keys()
        .find(|email| opaque_id(email) == id)
        .cloned()
        .ok_or_else(|| GoogleError::new(404, &format!("Group {name} not found")))
}

/// `GET /v1/groups:lookup?groupKey.id=EMAIL`
pub fn lookup(world: &World, parameters: &[(String, String)]) -> Result<Value, GoogleError> {
    let email = parameter(parameters, "groupKey.id").unwrap_or("").to_lowercase();
    if email.is_empty() {
        return Err(GoogleError::new(400, "groupKey.id is required"));
    }
    if !world.groups().contains_key(&email) {
        return Err(GoogleError::new(404, &format!("Group {email} not found")));
    }
    Ok(json!({"name": group_name(&email)}))
}

/// `GET /v1/groups/ID/memberships`: direct members, with their type.
pub fn list_memberships(world: &World, parent: &str, parameters: &[(String, String)]) -> Result<Value, GoogleError> {
    let group = group_email(world, parent)?;
    let rule = match parameter(parameters, "view").unwrap_or("BASIC") {
        "" | "BASIC" | "GROUP_VIEW_UNSPECIFIED" => LIST_BASIC,
        "FULL" => LIST_FULL,
        other => return Err(GoogleError::new(400, &format!("Invalid view '{other}'"))),
    };
    let members: Vec<Value> = world.groups()[&group]
        .iter()
        .map(|member| {
            let (kind, id) = member.split_once(':').unwrap_or(("user", member));
            let (kind, name) = match kind {
                "group" => ("GROUP", group_name(id)),
                "serviceaccount" => ("SERVICE_ACCOUNT", format!("users/{}", opaque_id(id))),
                _ => ("USER", format!("users/{}", opaque_id(id))),
            };
            json!({
                "name": format!("{parent}/memberships/{}", opaque_id(member)),
                "preferredMemberKey": {"id": id},
                "roles": [{"name": "MEMBER"}],
                "type": kind,
                "member": name,
            })
        })
        .collect();
    paged(&members, parameters, rule, world)
}

/// Parent `groups/-` and a query naming the member: `member_key_id == 'EMAIL' …`.
fn member_query(parameters: &[(String, String)], parent: &str, needs_label: bool) -> Result<String, GoogleError> {
    if parent != "groups/-" {
        return Err(GoogleError::new(400, &format!("Invalid parent '{parent}': this search takes groups/-")));
    }
    let query = parameter(parameters, "query").unwrap_or("");
    let member = query
        .split("member_key_id")
        .nth(1)
        .and_then(|rest| rest.trim_start().strip_prefix("=="))
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix('\''))
        .and_then(|rest| rest.split('\'').next())
        .filter(|member| !member.is_empty())
        .ok_or_else(|| GoogleError::new(400, "query is required and must include member_key_id == 'EMAIL'"))?;
    if needs_label && !query.contains(" in labels") {
        return Err(GoogleError::new(400, "query must include a label, e.g. '…groups.discussion_forum' in labels"));
    }
    Ok(member.to_lowercase())
}

fn group_relation(email: &str, relation: Option<&str>) -> Value {
    let mut value = json!({
        "group": group_name(email),
        "groupKey": {"id": email},
        "displayName": email.split('@').next().unwrap_or(email),
        "labels": {FORUM_LABEL: ""},
        "roles": [{"name": "MEMBER"}],
    });
    if let Some(relation) = relation {
        value["relationType"] = json!(relation);
    }
    value
}

/// The member as group members list it: `user:EMAIL`, or `group:EMAIL` for a known group.
fn as_member(world: &World, email: &str) -> String {
    if world.groups().contains_key(email) { format!("group:{email}") } else { format!("user:{email}") }
}

/// `GET /v1/groups/-/memberships:searchDirectGroups?query=member_key_id == 'EMAIL'`
pub fn search_direct_groups(
    world: &World,
    parent: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let member = member_query(parameters, parent, false)?;
    let groups: Vec<Value> = world
        .direct_groups_of(&as_member(world, &member))
        .iter()
        .map(|group| {
            let mut relation = group_relation(group, None);
            relation["membershipName"] = json!(format!("{}/memberships/{}", group_name(group), opaque_id(&member)));
            relation
        })
        .collect();
    paged(&groups, parameters, SEARCH, world)
}

fn transitive_allowed(world: &World) -> Result<(), GoogleError> {
    if world.settings.transitive_group_search {
        return Ok(());
    }
    Err(GoogleError::new(
        403,
        "This feature is only available to Google Workspace Enterprise Standard, Enterprise Plus, and Enterprise for Education; and Cloud Identity Premium accounts.",
    ))
}

/// `GET /v1/groups/-/memberships:searchTransitiveGroups?query=member_key_id == 'EMAIL' && 'LABEL' in labels`
pub fn search_transitive_groups(
    world: &World,
    parent: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let member = member_query(parameters, parent, true)?;
    transitive_allowed(world)?;
    let subject = as_member(world, &member);
    let direct = world.direct_groups_of(&subject);
    let groups: Vec<Value> = world
        .groups_of(&subject)
        .iter()
        .map(|group| group_relation(group, Some(if direct.contains(group) { "DIRECT" } else { "INDIRECT" })))
        .collect();
    paged(&groups, parameters, SEARCH, world)
}

/// `GET /v1/groups/ID/memberships:searchTransitiveMemberships`: every member below the group,
/// nested groups included (with `member` = `groups/…`).
pub fn search_transitive_memberships(
    world: &World,
    parent: &str,
    parameters: &[(String, String)],
) -> Result<Value, GoogleError> {
    let group = group_email(world, parent)?;
    transitive_allowed(world)?;
    let mut members = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut frontier = vec![(group.clone(), "DIRECT")];
    while let Some((current, relation)) = frontier.pop() {
        for member in world.groups().get(&current).into_iter().flatten() {
            if !seen.insert(member.clone()) {
                continue;
            }
            let (kind, id) = member.split_once(':').unwrap_or(("user", member));
            let name = if kind == "group" { group_name(id) } else { format!("users/{}", opaque_id(id)) };
            members.push(json!({
                "member": name,
                "preferredMemberKey": [{"id": id}],
                "relationType": relation,
                "roles": [{"role": "MEMBER"}],
            }));
            if kind == "group" {
                frontier.push((id.to_string(), "INDIRECT"));
            }
        }
    }
    paged(&members, parameters, SEARCH, world)
}

fn paged(
    items: &[Value],
    parameters: &[(String, String)],
    rule: PageRule,
    world: &World,
) -> Result<Value, GoogleError> {
    let (memberships, next) = page(items, parameters, rule, world.settings.max_page_size)?;
    let mut body = json!({"memberships": memberships});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(body)
}
