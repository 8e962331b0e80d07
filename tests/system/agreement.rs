//! The emulator's Policy Analyzer and the core's own eligibility rules agree, on a generated
//! organization of 200 projects, 50 nested groups and 2,000 bindings: what the catalog reads
//! through the SDK equals what the core computes from the raw policies.

use std::collections::{BTreeMap, BTreeSet};

use common::entitlement::{Entitlement, eligible_entitlement, eligible_entitlements};
use common::gcp::catalog::PolicyAnalyzerCatalog;
use common::policy::{Binding, Expr};
use emulator::world::{GroupFile, NodeFile};
use emulator::{Emulator, World, WorldFile};

use crate::support::{email, project, settings_from};

/// A small deterministic generator, so a failure reproduces.
struct Random(u64);

impl Random {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

const USERS: usize = 40;
const GROUPS: usize = 50;
const FOLDERS: usize = 12;
const PROJECTS: usize = 200;
const BINDINGS: usize = 2_000;
const ROLES: &[&str] =
    &["roles/compute.admin", "roles/storage.admin", "roles/viewer", "roles/logging.admin", "roles/bigquery.admin"];

fn generate() -> WorldFile {
    let mut random = Random(0x5eed_1234_abcd);
    let user = |i: usize| format!("user:u{i}@example.com");
    // Group i may contain groups with a lower index: nesting without cycles.
    let groups: Vec<GroupFile> = (0..GROUPS)
        .map(|i| GroupFile {
            email: format!("g{i}@example.com"),
            members: (0..2 + random.next(4))
                .map(|_| {
                    if i > 0 && random.next(3) == 0 {
                        format!("group:g{}@example.com", random.next(i))
                    } else {
                        user(random.next(USERS))
                    }
                })
                .collect(),
        })
        .collect();
    let node = |id: String, parent: Option<String>| NodeFile {
        id,
        parent,
        number: None,
        display_name: None,
        bindings: Vec::new(),
    };
    let mut organization = node("1".into(), None);
    let mut folders: Vec<NodeFile> = (0..FOLDERS)
        .map(|i| {
            let parent = if i > 0 && random.next(2) == 0 {
                format!("folders/f{}", random.next(i))
            } else {
                "organizations/1".into()
            };
            node(format!("f{i}"), Some(parent))
        })
        .collect();
    let mut projects: Vec<NodeFile> = (0..PROJECTS)
        .map(|i| {
            let parent = if random.next(4) == 0 {
                "organizations/1".to_string()
            } else {
                format!("folders/f{}", random.next(FOLDERS))
            };
            node(format!("project-{i:03}"), Some(parent))
        })
        .collect();
    for _ in 0..BINDINGS {
        let members = (0..1 + random.next(3))
            .map(|_| {
                if random.next(2) == 0 {
                    user(random.next(USERS))
                } else {
                    format!("group:g{}@example.com", random.next(GROUPS))
                }
            })
            .collect();
        let expression = match random.next(10) {
            0..=2 => Some("has({}.jitAccessConstraint)".to_string()),
            3..=5 => Some("has({}.multiPartyApprovalConstraint)".to_string()),
            6 => Some(format!(
                "has({{}}.multiPartyApprovalConstraint) && resource.name.startsWith('b{}')",
                random.next(3)
            )),
            7 => Some("request.time < timestamp(\"2099-01-01T00:00:00Z\")".to_string()),
            _ => None,
        };
        let binding = Binding {
            role: ROLES[random.next(ROLES.len())].to_string(),
            members,
            condition: expression.map(|expression| Expr { expression, title: "generated".into(), ..Expr::default() }),
        };
        match random.next(20) {
            0 => organization.bindings.push(binding),
            1..=4 => folders[random.next(FOLDERS)].bindings.push(binding),
            _ => projects[random.next(PROJECTS)].bindings.push(binding),
        }
    }
    WorldFile {
        organization,
        folders,
        projects,
        groups,
        users: Vec::new(),
        service_account: "jit@p.iam.gserviceaccount.com".into(),
        topics: Vec::new(),
        secrets: Default::default(),
    }
}

/// The core's side, computed straight from the file: ancestry and group closure by hand.
struct Expected {
    parents: BTreeMap<String, String>,
    bindings: BTreeMap<String, Vec<Binding>>,
    groups: Vec<GroupFile>,
}

impl Expected {
    fn new(file: &WorldFile) -> Expected {
        let mut parents = BTreeMap::new();
        let mut bindings = BTreeMap::new();
        bindings.insert("organizations/1".to_string(), file.organization.bindings.clone());
        for folder in &file.folders {
            parents.insert(format!("folders/{}", folder.id), folder.parent.clone().expect("parent"));
            bindings.insert(format!("folders/{}", folder.id), folder.bindings.clone());
        }
        for project in &file.projects {
            parents.insert(format!("projects/{}", project.id), project.parent.clone().expect("parent"));
            bindings.insert(format!("projects/{}", project.id), project.bindings.clone());
        }
        Expected { parents, bindings, groups: file.groups.clone() }
    }

    fn principals(&self, user: &str) -> BTreeSet<String> {
        let mut principals = BTreeSet::from([format!("user:{user}")]);
        loop {
            let before = principals.len();
            for group in &self.groups {
                if group.members.iter().any(|m| principals.contains(m)) {
                    principals.insert(format!("group:{}", group.email));
                }
            }
            if principals.len() == before {
                return principals;
            }
        }
    }

    fn applicable(&self, user: &str, project_id: &str) -> Vec<&Binding> {
        let principals = self.principals(user);
        let mut node = format!("projects/{project_id}");
        let mut out = Vec::new();
        loop {
            out.extend(self.bindings[&node].iter().filter(|b| b.members.iter().any(|m| principals.contains(m))));
            match self.parents.get(&node) {
                Some(parent) => node = parent.clone(),
                None => return out,
            }
        }
    }

    fn entitlements(&self, user: &str, project_id: &str) -> Vec<Entitlement> {
        eligible_entitlements(&project(project_id), self.applicable(user, project_id))
    }

    fn holders(&self, entitlement: &Entitlement, project_id: &str) -> Vec<String> {
        let mut holders: Vec<String> = (0..USERS)
            .map(|i| format!("u{i}@example.com"))
            .filter(|user| {
                self.applicable(user, project_id)
                    .iter()
                    .any(|b| eligible_entitlement(&project(project_id), b).as_ref() == Some(entitlement))
            })
            .collect();
        holders.sort();
        holders
    }
}

#[tokio::test]
async fn emulator_analysis_agrees_with_the_core_on_a_generated_organization() {
    let file = generate();
    let expected = Expected::new(&file);
    let binding_count: usize = expected.bindings.values().map(Vec::len).sum();
    assert_eq!(binding_count, BINDINGS);
    let emulator = Emulator::start(World::new(file).expect("consistent")).await.expect("starts");
    let mut pairs = emulator.environment();
    pairs.push(("RESOURCE_SCOPE", "organizations/1".to_string()));
    let (settings, scope) = settings_from(&pairs);
    let catalog = PolicyAnalyzerCatalog::new(&settings, &scope).await.expect("client");

    let mut compared = 0;
    let mut non_empty = 0;
    // A sample of users and projects across the whole tree keeps the test quick.
    for user_index in (0..USERS).step_by(5) {
        let user = format!("u{user_index}@example.com");
        for project_index in (0..PROJECTS).step_by(8) {
            let project_id = format!("project-{project_index:03}");
            let actual = catalog.user_entitlements(&email(&user), &project(&project_id)).await.expect("analysis");
            let wanted = expected.entitlements(&user, &project_id);
            assert_eq!(actual.entitlements, wanted, "{user} on {project_id}");
            compared += 1;
            non_empty += usize::from(!wanted.is_empty());
            if user_index % 15 == 0 {
                for entitlement in &wanted {
                    let holders = catalog.holders(entitlement).await.expect("analysis");
                    let holders: Vec<String> = holders.iter().map(|e| e.to_string()).collect();
                    assert_eq!(holders, expected.holders(entitlement, &project_id), "holders of {}", entitlement.id);
                }
            }
        }
    }
    assert_eq!(compared, 200);
    assert!(non_empty > 50, "the generated organization should grant plenty: {non_empty}");
}
