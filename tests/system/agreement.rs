//! Both catalogs and the core's own eligibility rules agree, on a generated organization of 200
//! projects under nested folders, 50 groups nested at least three deep, and 2,000 bindings with
//! resource conditions, time-bound eligibility (current and ended) and activations: what each
//! catalog reads through the SDK and Cloud Identity equals what the rules compute by hand from
//! the raw file, for every user's entitlements, activations, peers and projects. The Asset
//! Inventory catalog runs twice: with transitive group search, and without it (an ordinary
//! edition, walking direct memberships) with pages of 25 items, so every list is paged.

use std::collections::{BTreeMap, BTreeSet};

use common::activation::{ActivationBinding, read_activation_binding};
use common::condition::{Evaluation, evaluate_at};
use common::entitlement::{Entitlement, ProjectId, eligible_entitlement, eligible_entitlements};
use common::gcp::catalog::AnyCatalog;
use common::policy::{Binding, Expr};
use common::timestamp::Timestamp;
use emulator::world::{GroupFile, NodeFile, Settings};
use emulator::{Emulator, World, WorldFile};

use crate::support::{email, on_project, project, settings_from};

fn folder(i: usize) -> String {
    format!("folders/{}", 200_000 + i)
}

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
const ACTIVATIONS: usize = 300;
const ROLES: &[&str] = &[
    "roles/compute.admin",
    "roles/storage.admin",
    "roles/storage.objectViewer",
    "roles/logging.admin",
    "roles/bigquery.admin",
];

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
                // g1 holds g0, g2 holds g1, g3 holds g2: nesting at least three deep.
                .chain((1..4).contains(&i).then(|| format!("group:g{}@example.com", i - 1)))
                .collect(),
            external: false,
        })
        .collect();
    let node = |id: String, parent: Option<String>| NodeFile {
        id,
        parent,
        number: None,
        display_name: None,
        state: None,
        allowed_policy_member_domains: Vec::new(),
        bindings: Vec::new(),
    };
    let mut organization = node("1".into(), None);
    let mut folders: Vec<NodeFile> = (0..FOLDERS)
        .map(|i| {
            let parent = if i > 0 && random.next(2) == 0 { folder(random.next(i)) } else { "organizations/1".into() };
            node(format!("{}", 200_000 + i), Some(parent))
        })
        .collect();
    let mut projects: Vec<NodeFile> = (0..PROJECTS)
        .map(|i| {
            let parent = if random.next(4) == 0 { "organizations/1".to_string() } else { folder(random.next(FOLDERS)) };
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
        let expression = match random.next(12) {
            0..=2 => Some("has({}.jitAccessConstraint)".to_string()),
            3..=5 => Some("has({}.multiPartyApprovalConstraint)".to_string()),
            6 => Some(format!(
                "has({{}}.multiPartyApprovalConstraint) && resource.name.startsWith('b{}')",
                random.next(3)
            )),
            7 => Some("request.time < timestamp(\"2099-01-01T00:00:00Z\")".to_string()),
            // Time-bound eligibility: one still running, one that ended.
            8 => Some("has({}.jitAccessConstraint) && request.time < timestamp(\"2099-01-01T00:00:00Z\")".to_string()),
            9 => Some(
                "has({}.multiPartyApprovalConstraint) && request.time < timestamp(\"2001-01-01T00:00:00Z\")"
                    .to_string(),
            ),
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
    // Activations, some running and some ended.
    for i in 0..ACTIVATIONS {
        let (start, end) = if i % 2 == 0 {
            ("2001-01-01T00:00:00Z", "2001-01-01T01:00:00Z")
        } else {
            ("2001-01-01T00:00:00Z", "2099-01-01T00:00:00Z")
        };
        let condition = if i % 3 == 0 { " && (resource.name.startsWith('b1'))" } else { "" };
        projects[random.next(PROJECTS)].bindings.push(Binding {
            role: ROLES[random.next(ROLES.len())].to_string(),
            members: vec![format!("user:u{}@example.com", random.next(USERS))],
            condition: Some(Expr {
                expression: format!(
                    "(request.time >= timestamp(\"{start}\") && request.time < timestamp(\"{end}\")){condition}"
                ),
                title: common::activation::ACTIVATION_TITLE.into(),
                ..Expr::default()
            }),
        });
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
        settings: Settings::default(),
    }
}

/// The core's side, computed straight from the file: ancestry and group closure by hand.
struct Expected {
    parents: BTreeMap<String, String>,
    bindings: BTreeMap<String, Vec<Binding>>,
    /// Each user's principals: the user and every group they are in, nested ones included.
    principals: BTreeMap<String, BTreeSet<String>>,
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
        let principals = (0..USERS)
            .map(|i| format!("u{i}@example.com"))
            .map(|user| {
                let mut principals = BTreeSet::from([format!("user:{user}")]);
                loop {
                    let before = principals.len();
                    for group in &file.groups {
                        if group.members.iter().any(|m| principals.contains(m)) {
                            principals.insert(format!("group:{}", group.email));
                        }
                    }
                    if principals.len() == before {
                        return (user, principals);
                    }
                }
            })
            .collect();
        Expected { parents, bindings, principals }
    }

    /// The bindings of the project and its ancestors that name the user or their groups, and
    /// whose time clauses have not failed.
    fn applicable(&self, user: &str, project_id: &str) -> Vec<&Binding> {
        let principals = &self.principals[user];
        let now = Timestamp::now();
        let mut node = format!("projects/{project_id}");
        let mut out = Vec::new();
        loop {
            out.extend(self.bindings[&node].iter().filter(|b| {
                b.members.iter().any(|m| principals.contains(m))
                    && b.condition.as_ref().is_none_or(|c| evaluate_at(&c.expression, now) != Evaluation::False)
            }));
            match self.parents.get(&node) {
                Some(parent) => node = parent.clone(),
                None => return out,
            }
        }
    }

    fn entitlements(&self, user: &str, project_id: &str) -> Vec<Entitlement> {
        eligible_entitlements(&on_project(project_id), self.applicable(user, project_id))
    }

    fn activations(&self, user: &str, project_id: &str) -> BTreeSet<String> {
        let member = format!("user:{user}");
        self.bindings[&format!("projects/{project_id}")]
            .iter()
            .filter(|b| b.members == [member.clone()])
            .filter_map(read_activation_binding)
            .map(|a| describe(&a))
            .collect()
    }

    fn projects(&self, user: &str) -> Vec<ProjectId> {
        (0..PROJECTS)
            .map(|i| format!("project-{i:03}"))
            .filter(|id| !self.entitlements(user, id).is_empty())
            .map(|id| project(&id))
            .collect()
    }

    /// Every entitlement on the project with the users who hold it (by type, as peers are).
    fn holders(&self, project_id: &str) -> BTreeMap<Entitlement, Vec<String>> {
        let mut holders: BTreeMap<Entitlement, BTreeSet<String>> = BTreeMap::new();
        for user in self.principals.keys() {
            for binding in self.applicable(user, project_id) {
                if let Some(entitlement) = eligible_entitlement(&on_project(project_id), binding) {
                    holders.entry(entitlement).or_default().insert(user.clone());
                }
            }
        }
        holders.into_iter().map(|(e, users)| (e, users.into_iter().collect())).collect()
    }
}

fn describe(activation: &ActivationBinding) -> String {
    format!(
        "{} {} {:?} {}-{}",
        activation.member,
        activation.role,
        activation.resource_condition.as_ref().map(|c| c.as_str().to_string()),
        activation.window.start(),
        activation.window.end()
    )
}

/// A catalog of `kind` against an emulator of `file` with `settings`.
async fn catalog(file: &WorldFile, settings: Settings, kind: &str) -> (Emulator, AnyCatalog) {
    let file = WorldFile { settings, ..file.clone() };
    let emulator = Emulator::start(World::new(file).expect("consistent")).await.expect("starts");
    let mut pairs = emulator.environment();
    pairs.push(("RESOURCE_SCOPE", "organizations/1".to_string()));
    pairs.push(("RESOURCE_CATALOG", kind.to_string()));
    let (backend, scope) = settings_from(&pairs);
    let catalog = AnyCatalog::new(&backend, &scope).await.expect("client");
    (emulator, catalog)
}

#[tokio::test]
async fn both_catalogs_agree_with_the_core_on_a_generated_organization() {
    let file = generate();
    let expected = Expected::new(&file);
    let binding_count: usize = expected.bindings.values().map(Vec::len).sum();
    assert_eq!(binding_count, BINDINGS + ACTIVATIONS);
    let ordinary = Settings { transitive_group_search: false, max_page_size: Some(25), ..Settings::default() };
    let catalogs = [
        ("PolicyAnalyzer", catalog(&file, Settings::default(), "PolicyAnalyzer").await),
        ("AssetInventory, transitive search", catalog(&file, Settings::default(), "AssetInventory").await),
        ("AssetInventory, direct memberships, small pages", catalog(&file, ordinary, "AssetInventory").await),
    ];

    let mut compared = 0;
    let mut non_empty = 0;
    let mut activations = 0;
    // A sample of users and projects across the whole tree keeps the test quick.
    for user_index in (0..USERS).step_by(5) {
        let user = format!("u{user_index}@example.com");
        let wanted_projects = expected.projects(&user);
        for (name, (_, catalog)) in &catalogs {
            let projects = catalog.projects(&email(&user)).await.expect("projects");
            assert_eq!(projects, wanted_projects, "{name}: projects of {user}");
        }
        for project_index in (0..PROJECTS).step_by(8) {
            let project_id = format!("project-{project_index:03}");
            let wanted = expected.entitlements(&user, &project_id);
            let wanted_activations = expected.activations(&user, &project_id);
            let wanted_holders: Vec<(Entitlement, Vec<String>)> = if user_index % 15 == 0 {
                let on_project = expected.holders(&project_id);
                wanted.iter().map(|e| (e.clone(), on_project.get(e).cloned().unwrap_or_default())).collect()
            } else {
                Vec::new()
            };
            for (name, (_, catalog)) in &catalogs {
                let actual = catalog.user_entitlements(&email(&user), &on_project(&project_id)).await.expect("catalog");
                assert_eq!(actual.entitlements, wanted, "{name}: {user} on {project_id}");
                let seen: BTreeSet<String> = actual.activations.iter().map(describe).collect();
                assert_eq!(seen, wanted_activations, "{name}: activations of {user} on {project_id}");
                for (entitlement, holders) in &wanted_holders {
                    let actual = catalog.reviewers(entitlement).await.expect("catalog").peers;
                    let actual: Vec<String> = actual.iter().map(|e| e.to_string()).collect();
                    assert_eq!(&actual, holders, "{name}: holders of {}", entitlement.id);
                }
            }
            compared += 1;
            non_empty += usize::from(!wanted.is_empty());
            activations += wanted_activations.len();
        }
    }
    assert_eq!(compared, 200);
    assert!(non_empty > 50, "the generated organization should grant plenty: {non_empty}");
    assert!(activations > 0, "the sample should see activations");
    // The ordinary edition was refused the transitive search and walked, page by page.
    let walked: BTreeMap<String, u64> = catalogs[2].1.0.state.calls();
    assert!(walked.get("cloudidentity.searchDirectGroups").copied().unwrap_or(0) > 0, "{walked:?}");
    assert!(walked.get("cloudidentity.listMemberships").copied().unwrap_or(0) > 0, "{walked:?}");
    let asset_calls: BTreeMap<String, u64> = catalogs[1].1.0.state.calls();
    assert_eq!(asset_calls.get("asset.analyzeIamPolicy"), None, "the Asset Inventory catalog never analyzes");
}
