//! Cloud Identity's groups API, the calls the catalog makes: `groups:lookup`,
//! `memberships.list`, `memberships:searchDirectGroups`, and the transitive searches, which an
//! organization without Workspace Enterprise or Cloud Identity Premium is refused (403).
//!
//! A group of another customer ([`crate::world::GroupFile::external`]) is found by
//! `groups:lookup`, but listing its memberships is refused (403); `searchDirectGroups` leaves
//! it out ("Groups for which the actor does not have the permission to view memberships are
//! silently filtered out"), and a transitive search that would cross it is refused (403:
//! "Actor must have view permissions to all transitive groups"). `memberships.list` in its default BASIC view
//! ("Only basic resource information is returned") leaves out each member's `type`; which
//! fields BASIC carries is not documented, so the emulator takes the narrow reading: ask for
//! `view=FULL` to tell users from groups. Query strings are CEL: `member_key_id == 'EMAIL'`
//! with the address a CEL string literal (`\'` and `\\` escaped).

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
    let (rule, full) = match parameter(parameters, "view").unwrap_or("BASIC") {
        "" | "BASIC" | "VIEW_UNSPECIFIED" | "GROUP_VIEW_UNSPECIFIED" => (LIST_BASIC, false),
        "FULL" => (LIST_FULL, true),
        other => return Err(GoogleError::new(400, &format!("Invalid view '{other}'"))),
    };
    readable(world, &group)?;
    let members: Vec<Value> = world.groups()[&group]
        .iter()
        .map(|member| {
            let (kind, id) = member.split_once(':').unwrap_or(("user", member));
            let (kind, name) = match kind {
                "group" => ("GROUP", group_name(id)),
                "serviceaccount" => ("SERVICE_ACCOUNT", format!("users/{}", opaque_id(id))),
                _ => ("USER", format!("users/{}", opaque_id(id))),
            };
            let mut membership = json!({
                "name": format!("{parent}/memberships/{}", opaque_id(member)),
                "preferredMemberKey": {"id": id},
                "roles": [{"name": "MEMBER"}],
                "member": name,
            });
            if full {
                membership["type"] = json!(kind);
            }
            membership
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
    let required = || GoogleError::new(400, "query is required and must include member_key_id == 'EMAIL'");
    let rest = query
        .split_once("member_key_id")
        .map(|(_, rest)| rest.trim_start())
        .and_then(|rest| rest.strip_prefix("=="))
        .ok_or_else(required)?;
    let (member, after) = cel_string(rest.trim_start())?;
    if member.is_empty() {
        return Err(required());
    }
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with("&&")) {
        return Err(GoogleError::new(
            400,
            &format!("Invalid query: unexpected '{after}' after the member's string literal"),
        ));
    }
    if needs_label && !after.contains(" in labels") {
        return Err(GoogleError::new(400, "query must include a label, e.g. '…groups.discussion_forum' in labels"));
    }
    Ok(member.to_lowercase())
}

/// A CEL string literal at the start of `text` (quoted with `'` or `"`), unescaped, and the
/// text after it. A quote or backslash inside the literal must be escaped (`\'`, `\\`); an
/// unterminated literal or an unknown escape is refused, as CEL's parser refuses it.
pub fn cel_string(text: &str) -> Result<(String, &str), GoogleError> {
    let invalid = |why: &str| GoogleError::new(400, &format!("Invalid query: {why}"));
    let mut chars = text.char_indices();
    let quote = match chars.next() {
        Some((_, quote @ ('\'' | '"'))) => quote,
        _ => return Err(invalid("a string literal in quotes is expected after ==")),
    };
    let mut value = String::new();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped @ ('\\' | '\'' | '"' | '`' | '?'))) => value.push(escaped),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                _ => return Err(invalid("unknown escape sequence in a string literal")),
            },
            c if c == quote => return Ok((value, &text[index + c.len_utf8()..])),
            c => value.push(c),
        }
    }
    Err(invalid("unterminated string literal"))
}

/// 403 for a group of another customer: its memberships are not this app's to read.
fn readable(world: &World, group: &str) -> Result<(), GoogleError> {
    if world.is_external(group) {
        return Err(GoogleError::new(
            403,
            &format!(
                "The caller does not have permission to view the memberships of {group}: it belongs to another customer"
            ),
        ));
    }
    Ok(())
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
        .filter(|group| !world.is_external(group))
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
    let all = world.groups_of(&subject);
    // "Actor must have view permissions to all transitive groups."
    if let Some(external) = all.iter().find(|group| world.is_external(group)) {
        readable(world, external)?;
    }
    let groups: Vec<Value> = all
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
    readable(world, &group)?;
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
                // The search needs to view every group below: one of another customer
                // refuses the whole search (the narrow reading; Google does not say).
                readable(world, id)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_string_literals_are_unescaped() {
        let parsed = [
            (r"'alice@example.com' && x", "alice@example.com", " && x"),
            (r"'o\'neil@example.com'", "o'neil@example.com", ""),
            (r#""o'neil@example.com""#, "o'neil@example.com", ""),
            (r"'back\\slash'", "back\\slash", ""),
            // An unescaped quote ends the literal: the rest of the query is what follows.
            (r"'o'neil@example.com'", "o", "neil@example.com'"),
        ];
        for (text, value, rest) in parsed {
            let got = cel_string(text).map(|(value, rest)| (value, rest.to_string())).map_err(|e| e.message);
            assert_eq!(got, Ok((value.to_string(), rest.to_string())), "{text}");
        }
        for refused in [r"'unterminated", r"'\q'", "alice@example.com", ""] {
            assert_eq!(cel_string(refused).map(|_| ()).map_err(|e| e.code), Err(400), "{refused}");
        }
    }
}
