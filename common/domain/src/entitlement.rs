//! Entitlements: a role a user may activate on a project, under an optional resource
//! condition, and the stable ID that names it in the API, links and tokens.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::condition::{ActivationType, ConditionError, ResourceCondition, eligibility};
use crate::iam::Binding;

/// A Google Cloud project ID (`my-project-123`, or domain-scoped `example.com:my-project`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectId(String);

/// Where an entitlement is activated: a project (by ID, as the reference app named it), a
/// folder or the organization (`folders/NUMBER`, `organizations/NUMBER`). Its text form is
/// the same, so project IDs keep working everywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceId {
    Project(ProjectId),
    Folder(String),
    Organization(String),
}

impl ResourceId {
    pub fn parse(text: &str) -> Result<ResourceId, EntitlementError> {
        let number = |n: &str| !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_digit());
        match text.split_once('/') {
            Some(("folders", n)) if number(n) => Ok(ResourceId::Folder(n.to_string())),
            Some(("organizations", n)) if number(n) => Ok(ResourceId::Organization(n.to_string())),
            Some(_) => Err(EntitlementError::Project(text.chars().take(100).collect())),
            None => ProjectId::parse(text).map(ResourceId::Project),
        }
    }

    /// `projects/ID`, `folders/N` or `organizations/N`, as Resource Manager names it.
    pub fn resource_name(&self) -> String {
        match self {
            ResourceId::Project(project) => project.resource_name(),
            ResourceId::Folder(n) => format!("folders/{n}"),
            ResourceId::Organization(n) => format!("organizations/{n}"),
        }
    }

    /// `//cloudresourcemanager.googleapis.com/…`, as Cloud Asset names it.
    pub fn full_resource_name(&self) -> String {
        format!("//cloudresourcemanager.googleapis.com/{}", self.resource_name())
    }

    pub fn project(&self) -> Option<&ProjectId> {
        match self {
            ResourceId::Project(project) => Some(project),
            _ => None,
        }
    }
}

/// The nodes below `root` in a parent map (name → parent name), deepest last; a name whose
/// chain never reaches `root` (or loops) is not below it.
pub fn descendants<'a>(root: &str, parents: &'a BTreeMap<String, String>) -> Vec<&'a str> {
    let below = |start: &str| {
        let mut name = start;
        for _ in 0..=parents.len() {
            match parents.get(name) {
                Some(parent) if parent == root => return true,
                Some(parent) => name = parent,
                None => return false,
            }
        }
        false
    };
    parents.keys().map(String::as_str).filter(|name| *name != root && below(name)).collect()
}

/// Which kind of resource a route names: `/api/projects/{id}/…`, `/api/folders/{id}/…`,
/// `/api/organizations/{id}/…`.
pub const PROJECTS: u8 = 0;
pub const FOLDERS: u8 = 1;
pub const ORGANIZATIONS: u8 = 2;

/// The resource a route's kind and path segment name.
pub fn resource_of(kind: u8, id: &str) -> Result<ResourceId, EntitlementError> {
    match kind {
        FOLDERS => ResourceId::parse(&format!("folders/{id}")),
        ORGANIZATIONS => ResourceId::parse(&format!("organizations/{id}")),
        _ => ProjectId::parse(id).map(ResourceId::Project),
    }
}

impl From<ProjectId> for ResourceId {
    fn from(project: ProjectId) -> ResourceId {
        ResourceId::Project(project)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceId::Project(project) => write!(f, "{project}"),
            other => f.write_str(&other.resource_name()),
        }
    }
}

/// An IAM role: `roles/NAME`, `projects/ID/roles/NAME` or `organizations/NUMBER/roles/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

/// Names one entitlement: resource, role and resource condition. Its text form is the
/// reference app's `project:role[:condition]` (or `folders/N:role…`, `organizations/N:role…`),
/// with the condition in URL-safe Base64, so IDs from either system look alike and fit in a
/// query string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntitlementId {
    resource: ResourceId,
    role: RoleName,
    resource_condition: Option<ResourceCondition>,
}

/// Project and role (a few hundred bytes at most) and the longest resource condition IAM
/// takes, in Base64: longer text cannot name an entitlement and is refused before decoding.
pub const MAX_ID_BYTES: usize = 512 + crate::condition::MAX_CONDITION_BYTES.div_ceil(3) * 4;

/// An entitlement a user holds, with how it is activated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entitlement {
    pub id: EntitlementId,
    pub activation_type: ActivationType,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntitlementError {
    #[error("'{0}' is not a valid project ID")]
    Project(String),
    #[error("'{0}' is not a valid role name")]
    Role(String),
    #[error("'{0}' is not a valid entitlement ID")]
    Id(String),
    #[error("the entitlement ID is {length} bytes long; IDs are at most {MAX_ID_BYTES}")]
    TooLong { length: usize },
    #[error("the entitlement ID's resource condition is not valid: {0}")]
    Condition(#[from] ConditionError),
}

impl ProjectId {
    pub fn parse(text: &str) -> Result<ProjectId, EntitlementError> {
        // Project IDs are 6 to 30 lowercase letters, digits and hyphens; domain-scoped ones
        // add `domain:`. The check is loose on length (tests use short IDs) but strict on
        // characters, since the ID goes into resource names and URLs.
        let (domain, id) = match text.rsplit_once(':') {
            Some((domain, id)) => (Some(domain), id),
            None => (None, text),
        };
        let id_ok = !id.is_empty()
            && id.len() <= 30
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !id.ends_with('-');
        let domain_ok = domain.is_none_or(|d| {
            !d.is_empty()
                && d.len() <= 63
                && d.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        });
        if id_ok && domain_ok {
            Ok(ProjectId(text.to_string()))
        } else {
            Err(EntitlementError::Project(text.chars().take(100).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `projects/ID`, as Resource Manager names it.
    pub fn resource_name(&self) -> String {
        format!("projects/{}", self.0)
    }

    /// `//cloudresourcemanager.googleapis.com/projects/ID`, as Cloud Asset names it.
    pub fn full_resource_name(&self) -> String {
        format!("//cloudresourcemanager.googleapis.com/projects/{}", self.0)
    }
}

impl RoleName {
    pub fn parse(text: &str) -> Result<RoleName, EntitlementError> {
        let refuse = || EntitlementError::Role(text.chars().take(100).collect());
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 128
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        };
        let parent_ok = |parent: &str| {
            !parent.is_empty() && parent.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
        };
        let parts: Vec<&str> = text.split('/').collect();
        let valid = match parts.as_slice() {
            ["roles", name] => name_ok(name),
            ["projects" | "organizations", parent, "roles", name] => parent_ok(parent) && name_ok(name),
            _ => false,
        };
        if valid { Ok(RoleName(text.to_string())) } else { Err(refuse()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EntitlementId {
    pub fn new(
        resource: impl Into<ResourceId>,
        role: RoleName,
        resource_condition: Option<ResourceCondition>,
    ) -> EntitlementId {
        EntitlementId { resource: resource.into(), role, resource_condition }
    }

    /// Parses `project:role` or `project:role:base64url(condition)`.
    ///
    /// A role always holds a `/` and Base64 never does, which tells the two forms apart even
    /// for domain-scoped project IDs that hold a `:` of their own. The condition that comes
    /// back is only a claim: callers match the ID against the user's real entitlements
    /// before anything is granted.
    pub fn parse(text: &str) -> Result<EntitlementId, EntitlementError> {
        let refuse = || EntitlementError::Id(text.chars().take(200).collect());
        if text.len() > MAX_ID_BYTES {
            return Err(EntitlementError::TooLong { length: text.len() });
        }
        let (rest, last) = text.rsplit_once(':').ok_or_else(refuse)?;
        let (project, role, condition) = if last.contains('/') {
            (rest, last, None)
        } else {
            let (project, role) = rest.rsplit_once(':').ok_or_else(refuse)?;
            (project, role, Some(last))
        };
        let resource_condition = match condition {
            None => None,
            Some(encoded) => {
                let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| refuse())?;
                let text = String::from_utf8(bytes).map_err(|_| refuse())?;
                Some(ResourceCondition::parse(&text)?)
            }
        };
        Ok(EntitlementId { resource: ResourceId::parse(project)?, role: RoleName::parse(role)?, resource_condition })
    }

    /// The project, folder or organization it is activated on.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    pub fn role(&self) -> &RoleName {
        &self.role
    }

    pub fn resource_condition(&self) -> Option<&ResourceCondition> {
        self.resource_condition.as_ref()
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for EntitlementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.role)?;
        if let Some(condition) = &self.resource_condition {
            write!(f, ":{}", URL_SAFE_NO_PAD.encode(condition.as_str()))?;
        }
        Ok(())
    }
}

/// The entitlement an eligible binding grants on `resource`; `None` for any other binding.
pub fn eligible_entitlement(resource: &ResourceId, binding: &Binding) -> Option<Entitlement> {
    let eligibility = eligibility(&binding.condition.as_ref()?.expression)?;
    let role = RoleName::parse(&binding.role).ok()?;
    Some(Entitlement {
        id: EntitlementId::new(resource.clone(), role, eligibility.resource_condition),
        activation_type: eligibility.activation_type,
    })
}

/// The entitlements a user holds on `project` through `bindings`: the bindings of the project
/// and its ancestors that name the user or one of the user's groups.
pub fn eligible_entitlements<'a>(
    resource: &ResourceId,
    bindings: impl IntoIterator<Item = &'a Binding>,
) -> Vec<Entitlement> {
    merge_entitlements(bindings.into_iter().filter_map(|binding| eligible_entitlement(resource, binding)))
}

/// Merges entitlements found in several bindings: one per ID, and where a role is both
/// self-approvable and peer-approved, self-approval wins (as in the reference app).
/// The result is sorted by ID.
pub fn merge_entitlements(entitlements: impl IntoIterator<Item = Entitlement>) -> Vec<Entitlement> {
    let mut by_id: std::collections::BTreeMap<EntitlementId, ActivationType> = Default::default();
    for entitlement in entitlements {
        by_id
            .entry(entitlement.id)
            .and_modify(|existing| *existing = (*existing).min(entitlement.activation_type))
            .or_insert(entitlement.activation_type);
    }
    by_id.into_iter().map(|(id, activation_type)| Entitlement { id, activation_type }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn descendants_follow_the_parent_chain_and_survive_loops() {
        let parents: BTreeMap<String, String> = [
            ("folders/1", "organizations/9"),
            ("folders/2", "folders/1"),
            ("folders/3", "organizations/8"),
            ("folders/4", "folders/5"),
            ("folders/5", "folders/4"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(descendants("organizations/9", &parents), ["folders/1", "folders/2"]);
        assert_eq!(descendants("folders/1", &parents), ["folders/2"]);
        assert!(descendants("folders/4", &parents).contains(&"folders/5"), "a loop ends");
        assert!(descendants("folders/2", &parents).is_empty());
    }

    use super::*;

    fn id(project: &str, role: &str, condition: Option<&str>) -> EntitlementId {
        EntitlementId::new(
            ProjectId::parse(project).expect("project"),
            RoleName::parse(role).expect("role"),
            condition.map(|c| ResourceCondition::parse(c).expect("condition")),
        )
    }

    #[test]
    fn ids_round_trip_and_are_url_safe() {
        for entitlement in [
            id("project-1", "roles/compute.admin", None),
            id("example.com:project-1", "roles/compute.admin", None),
            id("project-1", "projects/project-1/roles/customRole", None),
            id("project-1", "organizations/123/roles/custom.role_1", None),
            id("project-1", "roles/storage.admin", Some("resource.name.startsWith('projects/_/buckets/a?b=c&d')")),
            id("example.com:p-2", "roles/storage.admin", Some("(a) && (b)")),
        ] {
            let text = entitlement.to_string();
            assert!(!text.contains(['+', '=', '?', '&', '#', ' ', '%']), "not URL-safe: {text}");
            assert_eq!(EntitlementId::parse(&text), Ok(entitlement.clone()), "{text}");
        }
        assert_eq!(id("project-1", "roles/compute.admin", None).to_string(), "project-1:roles/compute.admin");
    }

    #[test]
    fn refuses_malformed_ids() {
        for text in [
            "",
            "project-1",
            "project-1:",
            ":roles/compute.admin",
            "project-1:compute.admin",
            "Project-1:roles/compute.admin",
            "project-1:roles/compute.admin:!!notbase64",
            "project-1:roles/compute.admin:dHJ1ZSkgfHwgKHRydWU", // "true) || (true"
            "project-1:roles/compute.admin:x:y",
            "project 1:roles/compute.admin",
            "project-1:roles/../../x",
        ] {
            assert!(EntitlementId::parse(text).is_err(), "accepted {text:?}");
        }
        // Deep nesting and sheer length are refused with a reason, not a crash.
        let deep = format!("{}a{}", "(".repeat(5_000), ")".repeat(5_000));
        let text = format!("project-1:roles/compute.admin:{}", URL_SAFE_NO_PAD.encode(&deep));
        assert!(matches!(
            EntitlementId::parse(&text),
            Err(EntitlementError::Condition(ConditionError::TooDeep { .. }))
        ));
        let long = format!("project-1:roles/compute.admin:{}", "A".repeat(MAX_ID_BYTES));
        assert!(matches!(EntitlementId::parse(&long), Err(EntitlementError::TooLong { .. })));
    }

    #[test]
    fn project_and_role_names() {
        for good in ["project-1", "my-project-123", "example.com:my-project"] {
            assert!(ProjectId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1project", "project_1", "project-", "PROJECT", "p/1", "a:b:c:"] {
            assert!(ProjectId::parse(bad).is_err(), "{bad}");
        }
        for good in ["roles/owner", "roles/compute.admin", "projects/p-1/roles/my_role", "organizations/1/roles/x.y"] {
            assert!(RoleName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "owner", "roles/", "roles/a/b", "folders/1/roles/x", "roles/a b", "roles/a\"b"] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
        let project = ProjectId::parse("project-1").expect("valid");
        assert_eq!(project.resource_name(), "projects/project-1");
        assert_eq!(project.full_resource_name(), "//cloudresourcemanager.googleapis.com/projects/project-1");
    }

    #[test]
    fn merging_keeps_one_per_id_and_jit_wins() {
        let admin = id("project-1", "roles/compute.admin", None);
        let viewer = id("project-1", "roles/compute.viewer", None);
        let merged = merge_entitlements([
            Entitlement { id: admin.clone(), activation_type: ActivationType::Mpa },
            Entitlement { id: viewer.clone(), activation_type: ActivationType::Mpa },
            Entitlement { id: admin.clone(), activation_type: ActivationType::Jit },
            Entitlement { id: viewer.clone(), activation_type: ActivationType::Mpa },
        ]);
        assert_eq!(
            merged,
            vec![
                Entitlement { id: admin, activation_type: ActivationType::Jit },
                Entitlement { id: viewer, activation_type: ActivationType::Mpa },
            ]
        );
    }
}
