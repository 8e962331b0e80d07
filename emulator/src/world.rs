//! The emulated organization: a resource tree (organization → folders → projects) with an IAM
//! policy on each node, users and nested groups, loaded from YAML and held in memory.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use common::policy::{Binding, Policy};
use serde::Deserialize;

use crate::google::GoogleError;

/// The YAML file. See `emulator/organization.yaml` for a documented example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldFile {
    pub organization: NodeFile,
    #[serde(default)]
    pub folders: Vec<NodeFile>,
    #[serde(default)]
    pub projects: Vec<NodeFile>,
    #[serde(default)]
    pub groups: Vec<GroupFile>,
    /// People who can sign in locally; group members and binding members are added.
    #[serde(default)]
    pub users: Vec<String>,
    /// The account whose key signs activation tokens (`signJwt`).
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// Pub/Sub topics to create at start.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Secret Manager secrets: `projects/P/secrets/S` → value (every version reads it).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// What the organization has bought, and test devices.
    #[serde(default)]
    pub settings: Settings,
}

/// The organization's edition and quotas, which change how Google answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Cloud Identity's transitive group searches: only Workspace Enterprise and Cloud
    /// Identity Premium have them; elsewhere Google answers 403.
    pub transitive_group_search: bool,
    /// Policy Analyzer queries a day without a paid Security Command Center tier (Google: 20);
    /// absent for a paid tier, with no daily cap.
    pub free_analysis_queries_per_day: Option<u64>,
    /// Test device: serve at most this many items a page, whatever is asked, so that paging
    /// is exercised with a small organization.
    pub max_page_size: Option<usize>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { transitive_group_search: true, free_analysis_queries_per_day: None, max_page_size: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub id: String,
    /// `organizations/ID` or `folders/ID`; absent for the organization.
    #[serde(default)]
    pub parent: Option<String>,
    /// Projects only: the project number (defaults to a made-up one).
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    pub email: String,
    /// `user:EMAIL` or `group:EMAIL` (nesting is allowed).
    #[serde(default)]
    pub members: Vec<String>,
}

fn default_service_account() -> String {
    "jitaccess@jit-project.iam.gserviceaccount.com".to_string()
}

/// One node of the resource tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// `organizations/100`, `folders/200` or `projects/project-1`.
    pub name: String,
    pub parent: Option<String>,
    pub display_name: String,
    pub project_number: Option<String>,
    pub policy: Policy,
    etag_counter: u64,
}

/// The whole emulated organization.
#[derive(Debug, Clone)]
pub struct World {
    nodes: BTreeMap<String, Node>,
    /// Group email → direct members (`user:…`, `group:…`), lowercased.
    groups: BTreeMap<String, Vec<String>>,
    users: BTreeSet<String>,
    pub service_account: String,
    pub topics: Vec<String>,
    pub secrets: BTreeMap<String, String>,
    pub settings: Settings,
}

impl WorldFile {
    pub fn parse(yaml: &str) -> anyhow::Result<WorldFile> {
        Ok(serde_yaml_ng::from_str(yaml)?)
    }
}

impl World {
    pub fn new(file: WorldFile) -> anyhow::Result<World> {
        let mut nodes = BTreeMap::new();
        let organization = format!("organizations/{}", file.organization.id);
        let mut add = |name: String, node: &NodeFile, parent: Option<String>, number: Option<String>| {
            let policy = Policy {
                version: if node.bindings.iter().any(|b| b.condition.is_some()) { 3 } else { 1 },
                bindings: node.bindings.clone(),
                audit_configs: Vec::new(),
                etag: String::new(),
            };
            let display_name = node.display_name.clone().unwrap_or_else(|| node.id.clone());
            let previous = nodes.insert(
                name.clone(),
                Node { name: name.clone(), parent, display_name, project_number: number, policy, etag_counter: 1 },
            );
            anyhow::ensure!(previous.is_none(), "{name} is declared twice");
            Ok(())
        };
        add(organization.clone(), &file.organization, None, None)?;
        for folder in &file.folders {
            let parent = folder.parent.clone().unwrap_or_else(|| organization.clone());
            add(format!("folders/{}", folder.id), folder, Some(parent), None)?;
        }
        for (index, project) in file.projects.iter().enumerate() {
            let parent = project.parent.clone().unwrap_or_else(|| organization.clone());
            let number = project.number.clone().unwrap_or_else(|| format!("{}", 100_000_000_000u64 + index as u64));
            add(format!("projects/{}", project.id), project, Some(parent), Some(number))?;
        }
        for node in nodes.values() {
            if let Some(parent) = &node.parent {
                anyhow::ensure!(nodes.contains_key(parent), "{} has an unknown parent {parent}", node.name);
            }
        }
        let groups: BTreeMap<String, Vec<String>> = file
            .groups
            .iter()
            .map(|g| (g.email.to_lowercase(), g.members.iter().map(|m| m.to_lowercase()).collect()))
            .collect();
        let mut users: BTreeSet<String> = file.users.iter().map(|u| u.to_lowercase()).collect();
        let member_lists =
            groups.values().chain(nodes.values().flat_map(|n| n.policy.bindings.iter().map(|b| &b.members)));
        for members in member_lists {
            users.extend(members.iter().filter_map(|m| m.strip_prefix("user:")).map(str::to_lowercase));
        }
        let mut world = World {
            nodes,
            groups,
            users,
            service_account: file.service_account,
            topics: file.topics,
            secrets: file.secrets,
            settings: file.settings,
        };
        let names: Vec<String> = world.nodes.keys().cloned().collect();
        for name in names {
            world.stamp_etag(&name);
        }
        Ok(world)
    }

    pub fn users(&self) -> &BTreeSet<String> {
        &self.users
    }

    pub fn groups(&self) -> &BTreeMap<String, Vec<String>> {
        &self.groups
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Accepts `projects/ID` and `projects/NUMBER`.
    pub fn resolve(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name).or_else(|| {
            let number = name.strip_prefix("projects/")?;
            self.nodes.values().find(|n| n.project_number.as_deref() == Some(number))
        })
    }

    /// The node and its ancestors, nearest first.
    pub fn ancestry(&self, name: &str) -> Vec<&Node> {
        let mut chain = Vec::new();
        let mut current = self.resolve(name);
        while let Some(node) = current {
            chain.push(node);
            current = node.parent.as_deref().and_then(|p| self.nodes.get(p));
        }
        chain
    }

    /// The node and everything below it.
    pub fn subtree(&self, name: &str) -> Vec<&Node> {
        let Some(root) = self.resolve(name) else {
            return Vec::new();
        };
        let mut out = vec![root];
        let mut index = 0;
        while index < out.len() {
            let parent = out[index].name.clone();
            out.extend(self.nodes.values().filter(|n| n.parent.as_deref() == Some(parent.as_str())));
            index += 1;
        }
        out
    }

    /// Every group `member` belongs to, directly or through nested groups.
    pub fn groups_of(&self, member: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut frontier = vec![member.to_lowercase()];
        while let Some(current) = frontier.pop() {
            for (group, members) in &self.groups {
                if members.contains(&current) && found.insert(group.clone()) {
                    frontier.push(format!("group:{group}"));
                }
            }
        }
        found
    }

    /// Replaces a group's direct members, as an administrator would (a test control).
    pub fn set_group_members(&mut self, group: &str, members: Vec<String>) {
        let members: Vec<String> = members.iter().map(|m| m.to_lowercase()).collect();
        self.users.extend(members.iter().filter_map(|m| m.strip_prefix("user:")).map(str::to_string));
        self.groups.insert(group.to_lowercase(), members);
    }

    /// The groups `member` (`user:…` or `group:…`) is directly in.
    pub fn direct_groups_of(&self, member: &str) -> BTreeSet<String> {
        let member = member.to_lowercase();
        self.groups.iter().filter(|(_, members)| members.contains(&member)).map(|(g, _)| g.clone()).collect()
    }

    /// The users in a group, through nested groups.
    pub fn users_in_group(&self, group: &str) -> BTreeSet<String> {
        let mut users = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut frontier = vec![group.to_lowercase()];
        while let Some(current) = frontier.pop() {
            if !seen.insert(current.clone()) {
                continue;
            }
            for member in self.groups.get(&current).into_iter().flatten() {
                if let Some(user) = member.strip_prefix("user:") {
                    users.insert(user.to_string());
                } else if let Some(nested) = member.strip_prefix("group:") {
                    frontier.push(nested.to_string());
                }
            }
        }
        users
    }

    /// Every node's policy, by resource name: the state worth keeping between runs.
    pub fn policies(&self) -> BTreeMap<String, Policy> {
        self.nodes.iter().map(|(name, node)| (name.clone(), node.policy.clone())).collect()
    }

    /// Puts back policies saved by [`World::policies`]; names the world does not know are
    /// skipped and returned.
    pub fn restore_policies(&mut self, policies: BTreeMap<String, Policy>) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, policy) in policies {
            match self.nodes.get_mut(&name) {
                Some(node) => node.policy = policy,
                None => unknown.push(name),
            }
        }
        unknown
    }

    pub fn get_policy(&self, name: &str) -> Result<Policy, GoogleError> {
        let node = self.resolve(name).ok_or_else(|| not_found(name))?;
        Ok(node.policy.clone())
    }

    /// Writes a policy if `etag` is empty (a blind write, which Google allows) or current.
    pub fn set_policy(&mut self, name: &str, mut policy: Policy) -> Result<Policy, GoogleError> {
        let key = self.resolve(name).ok_or_else(|| not_found(name))?.name.clone();
        let node = self.nodes.get_mut(&key).ok_or_else(|| not_found(name))?;
        if !policy.etag.is_empty() && policy.etag != node.policy.etag {
            return Err(GoogleError::new(
                409,
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
        validate_policy(&policy)?;
        if policy.bindings.iter().any(|b| b.condition.is_some()) {
            policy.version = 3;
        } else if policy.version == 0 {
            policy.version = 1;
        }
        node.policy = policy;
        self.stamp_etag(&key);
        Ok(self.nodes[&key].policy.clone())
    }

    fn stamp_etag(&mut self, name: &str) {
        if let Some(node) = self.nodes.get_mut(name) {
            node.etag_counter += 1;
            let mut bytes = [0u8; 8];
            bytes[..2].copy_from_slice(&[0x07, 0x06]);
            bytes[2..].copy_from_slice(&node.etag_counter.to_be_bytes()[2..]);
            node.policy.etag = base64::engine::general_purpose::STANDARD.encode(bytes);
        }
    }
}

fn not_found(name: &str) -> GoogleError {
    GoogleError::new(403, &format!("The caller does not have permission, or {name} does not exist"))
}

/// What Google itself refuses in a policy: conditions below version 3, malformed members.
fn validate_policy(policy: &Policy) -> Result<(), GoogleError> {
    let conditional = policy.bindings.iter().any(|b| b.condition.is_some());
    if conditional && policy.version != 3 {
        return Err(GoogleError::new(400, "Conditional role bindings require policy version 3"));
    }
    for binding in &policy.bindings {
        if !(binding.role.starts_with("roles/") || binding.role.contains("/roles/")) {
            return Err(GoogleError::new(400, &format!("Role {} is not valid", binding.role)));
        }
        for member in &binding.members {
            let known = ["user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:"]
                .iter()
                .any(|prefix| member.starts_with(prefix))
                || member == "allUsers"
                || member == "allAuthenticatedUsers";
            if !known {
                return Err(GoogleError::new(400, &format!("Invalid member {member}")));
            }
        }
        let too_long = binding
            .condition
            .as_ref()
            .is_some_and(|c| c.title.chars().count() > 100 || c.description.chars().count() > 256);
        if too_long {
            return Err(GoogleError::new(400, "Condition title or description is too long"));
        }
    }
    Ok(())
}
