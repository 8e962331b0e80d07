//! Cloud Identity groups, nested: the groups a user is in and the users in a group, through
//! every level of nesting and every page of every list.
//!
//! The transitive searches (`searchTransitiveGroups`, `searchTransitiveMemberships`) answer in
//! one paged call, but only for Workspace Enterprise and Cloud Identity Premium; elsewhere
//! Google answers 403. Then the directory is walked through direct memberships
//! (`searchDirectGroups`, `memberships.list`) to any depth, with a cycle guard and a bound on
//! how many groups one question may visit, and the refusal is remembered so later questions
//! go straight to the walk. The walk lists memberships in the FULL view, the one that carries
//! each member's `type` (the default BASIC view gives "only basic resource information", and
//! the reference app asks for FULL too). A group whose memberships this app may not read (a
//! group of another customer: 403) adds no members, and the log says so; the rest of the walk
//! goes on.
//!
//! Queries are CEL: an address goes inside a string literal, with `\` and `'` escaped
//! ([`cel_string`]), so that `o'neil@example.com` is asked about as itself.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::email::Email;
use crate::gcp::GcpError;
use crate::gcp::rest::RestClient;

/// The scope a service account needs to read groups.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-identity.groups.readonly";

/// Ordinary groups carry this label; the transitive search requires a label in its query.
const DISCUSSION_FORUM: &str = "cloudidentity.googleapis.com/groups.discussion_forum";

/// How many groups one question may visit while walking direct memberships. Past it the walk
/// stops and says so in the log: fewer groups only ever means fewer entitlements or peers.
pub const MAX_GROUPS_VISITED: usize = 2_000;

/// Largest page Cloud Identity serves for the searches.
const PAGE_SIZE: u32 = 1_000;

/// Largest page of `memberships.list` in the FULL view ("Must not be greater than 1000 for
/// GroupView.BASIC or 500 for GroupView.FULL").
const FULL_VIEW_PAGE_SIZE: u32 = 500;

#[derive(Debug)]
pub struct GroupDirectory {
    rest: RestClient,
    transitive_refused: AtomicBool,
}

impl GroupDirectory {
    pub fn new(rest: RestClient) -> GroupDirectory {
        GroupDirectory { rest, transitive_refused: AtomicBool::new(false) }
    }

    /// Whether Google refused a transitive search here (an edition without it).
    pub fn walks_direct_memberships(&self) -> bool {
        self.transitive_refused.load(Ordering::Relaxed)
    }

    /// Every group `member` is in, directly or through other groups, lowercase.
    pub async fn groups_of(&self, member: &Email) -> Result<BTreeSet<String>, GcpError> {
        if !self.walks_direct_memberships() {
            let query = format!("member_key_id == {} && '{DISCUSSION_FORUM}' in labels", cel_string(member.as_str()));
            match self
                .all_pages("searchTransitiveGroups", "v1/groups/-/memberships:searchTransitiveGroups", &search(&query))
                .await
            {
                Ok(memberships) => return Ok(group_keys(&memberships)),
                Err(GcpError::Denied(cause)) => self.remember_refusal(&cause),
                Err(other) => return Err(other),
            }
        }
        // Level by level, each level's groups asked side by side: as many round trips as the
        // nesting is deep, not as there are groups.
        let mut found = BTreeSet::new();
        let mut level = vec![member.as_str().to_string()];
        while !level.is_empty() {
            let asked = level.iter().map(|next| {
                let query = format!("member_key_id == {}", cel_string(next));
                async move {
                    self.all_pages("searchDirectGroups", "v1/groups/-/memberships:searchDirectGroups", &search(&query))
                        .await
                }
            });
            let mut next_level = Vec::new();
            for memberships in futures::future::try_join_all(asked).await? {
                for group in group_keys(&memberships) {
                    if found.len() >= MAX_GROUPS_VISITED {
                        tracing::warn!(member = %member, limit = MAX_GROUPS_VISITED, "group nesting walk stopped at its bound");
                        return Ok(found);
                    }
                    if found.insert(group.clone()) {
                        next_level.push(group);
                    }
                }
            }
            level = next_level;
        }
        Ok(found)
    }

    /// Every user in `group`, directly or through nested groups. A group this app may not read
    /// (outside the customer, say) has no members here, and the log says so.
    pub async fn members_of(&self, group: &str) -> Result<BTreeSet<Email>, GcpError> {
        let Some(name) = self.lookup(group).await? else {
            return Ok(BTreeSet::new());
        };
        if !self.walks_direct_memberships() {
            let path = format!("v1/{name}/memberships:searchTransitiveMemberships");
            match self.all_pages("searchTransitiveMemberships", &path, &search("")).await {
                Ok(memberships) => {
                    return Ok(memberships
                        .iter()
                        .filter(|m| m["member"].as_str().is_some_and(|n| n.starts_with("users/")))
                        .flat_map(|m| m["preferredMemberKey"].as_array().cloned().unwrap_or_default())
                        .filter_map(|key| key["id"].as_str().and_then(|id| Email::parse(id).ok()))
                        .collect());
                }
                Err(GcpError::Denied(cause)) => self.remember_refusal(&cause),
                Err(other) => return Err(other),
            }
        }
        let mut users = BTreeSet::new();
        let mut seen = BTreeSet::from([name.clone()]);
        let mut queue = VecDeque::from([name]);
        while let Some(next) = queue.pop_front() {
            let parameters = [("view", "FULL".to_string()), ("pageSize", FULL_VIEW_PAGE_SIZE.to_string())];
            let memberships =
                match self.all_pages("memberships.list", &format!("v1/{next}/memberships"), &parameters).await {
                    Ok(memberships) => memberships,
                    // One group we may not read (another customer's, say) hides its members only.
                    Err(GcpError::Denied(cause)) => {
                        tracing::warn!(group, nested = next, cause, "group memberships not readable; taken as empty");
                        continue;
                    }
                    Err(other) => return Err(other),
                };
            for membership in memberships {
                let id = membership["preferredMemberKey"]["id"].as_str().unwrap_or_default();
                match membership["type"].as_str() {
                    Some("GROUP") => {
                        if seen.len() >= MAX_GROUPS_VISITED {
                            tracing::warn!(
                                group,
                                limit = MAX_GROUPS_VISITED,
                                "group nesting walk stopped at its bound"
                            );
                            return Ok(users);
                        }
                        if let Some(nested) = self.lookup(id).await?
                            && seen.insert(nested.clone())
                        {
                            queue.push_back(nested);
                        }
                    }
                    Some("USER") => users.extend(Email::parse(id).ok()),
                    _ => {}
                }
            }
        }
        Ok(users)
    }

    /// `groups/ID` for a group's email; `None` when it is not there for us to read.
    async fn lookup(&self, group: &str) -> Result<Option<String>, GcpError> {
        let query = [("groupKey.id", group.to_string())];
        match self.rest.get("groups.lookup", "v1/groups:lookup", &query).await {
            Ok(found) => Ok(found["name"].as_str().map(str::to_string)),
            Err(GcpError::NotFound(cause) | GcpError::Denied(cause)) => {
                tracing::warn!(group, cause, "group not readable; taken as empty");
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    fn remember_refusal(&self, cause: &str) {
        if !self.transitive_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(cause, "transitive group search refused (edition without it): walking direct memberships");
        }
    }

    /// Every `memberships` item of every page, asked with `parameters`.
    async fn all_pages(&self, what: &str, path: &str, parameters: &[(&str, String)]) -> Result<Vec<Value>, GcpError> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut parameters = parameters.to_vec();
            if !token.is_empty() {
                parameters.push(("pageToken", token.clone()));
            }
            let page = self.rest.get(what, path, &parameters).await?;
            items.extend(page["memberships"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() && next != token => token = next.to_string(),
                _ => return Ok(items),
            }
        }
    }
}

/// A search's parameters: the largest page, and the query if there is one.
fn search(query: &str) -> Vec<(&'static str, String)> {
    let mut parameters = vec![("pageSize", PAGE_SIZE.to_string())];
    if !query.is_empty() {
        parameters.push(("query", query.to_string()));
    }
    parameters
}

/// `text` as a CEL string literal: in single quotes, with `\` and `'` escaped. An address
/// may hold a `'` (`o'neil@example.com`); unescaped, it would end the literal early.
pub fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn group_keys(memberships: &[Value]) -> BTreeSet<String> {
    memberships.iter().filter_map(|m| m["groupKey"]["id"].as_str()).map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_cel_string_literals() {
        assert_eq!(cel_string("alice@example.com"), "'alice@example.com'");
        assert_eq!(cel_string("o'neil@example.com"), r"'o\'neil@example.com'");
        assert_eq!(cel_string(r"a\b'"), r"'a\\b\''");
    }
}
