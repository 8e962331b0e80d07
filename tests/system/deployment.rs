//! The deployment matches the code: Terraform sets exactly the environment variables each
//! function reads (less the few that exist for local runs and tests), and every function
//! crate has its Cloud Run service or job, its image variable, and its image build.

use std::collections::{BTreeMap, BTreeSet};

use common::config::Env;

/// Read by the code, deliberately not set by Terraform.
const NOT_DEPLOYED: &[(&str, &str)] = &[
    (
        "GOOGLE_CLOUD_PROJECT",
        "for configuration, a fallback for RESOURCE_SCOPE and topic names, set in full; the runner reads it",
    ),
    ("ELEVATION_DURATION", "the reference app's deprecated name for ACTIVATION_TIMEOUT"),
    ("IAP_BACKEND_SERVICE_ID", "the reference app's way to form IAP_AUDIENCE, which Terraform sets whole"),
    ("PROJECT_NUMBER", "goes with IAP_BACKEND_SERVICE_ID"),
    ("PUBSUB_EMULATOR_HOST", "local and tests only"),
    ("FIRESTORE_EMULATOR_HOST", "local and tests only"),
    ("FIRESTORE_ENDPOINT", "endpoint override; the default is Google's"),
    ("CLOUD_ASSET_ENDPOINT", "endpoint override; the default is Google's"),
    ("CLOUD_IDENTITY_ENDPOINT", "endpoint override; the default is Google's"),
    ("RESOURCE_MANAGER_ENDPOINT", "endpoint override; the default is Google's"),
    ("IAM_CREDENTIALS_ENDPOINT", "endpoint override; the default is Google's"),
    ("PUBSUB_ENDPOINT", "endpoint override; the default is Google's"),
    ("SERVICE_ACCOUNT_JWKS_URL", "endpoint override; the default is Google's"),
    ("IAP_JWKS_URL", "endpoint override; the default is Google's"),
    ("SECRET_MANAGER_ENDPOINT", "endpoint override; the default is Google's"),
    ("SENDGRID_BASE_URL", "endpoint override; the default is SendGrid's"),
    ("PUSH_JWKS_URL", "endpoint override; the default is Google's"),
    ("SENDGRID_API_KEY", "local runs only; deployed, the key comes from Secret Manager"),
    ("K_SERVICE", "set by Cloud Run itself"),
    ("CHAT_ENDPOINT", "endpoint override; the default is Google's"),
];

/// Set by Terraform for the shared runner, which reads it directly.
const RUNNER: &[&str] = &["RUST_LOG", "GOOGLE_CLOUD_PROJECT"];

fn read_by_code() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut names = BTreeMap::new();
    let mut record = |function: &'static str, read: &dyn Fn(&mut Env<'_>)| {
        let mut env = Env::new(|_| None);
        read(&mut env);
        names.insert(function, env.names_read());
    };
    record("list_eligibility", &|env| drop(list_eligibility::Config::read(env)));
    record("request_approval", &|env| drop(request_approval::Config::read(env)));
    record("approve", &|env| drop(approve::Config::read(env)));
    record("mailer", &|env| drop(mailer::Config::read(env)));
    record("sweeper", &|env| drop(sweeper::Config::read(env)));
    record("chat", &|env| drop(chat::Config::read(env)));
    names
}

fn module_file(name: &str) -> String {
    let path = format!("{}/../terraform/modules/jit-access/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The keys a `locals` entry `NAME = { … }` or `NAME = merge(local.A, …, { … })` defines,
/// following the locals it merges.
fn local_env(main: &str, name: &str) -> BTreeSet<String> {
    let start = main.find(&format!("\n  {name} = ")).unwrap_or_else(|| panic!("local.{name} not found"));
    let body = &main[start + 1..];
    let mut depth = 0i32;
    let mut end = body.len();
    for (index, c) in body.char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => {
                depth -= 1;
                if depth == 0 {
                    end = index;
                    break;
                }
            }
            _ => {}
        }
    }
    let block = &body[..end];
    let mut keys = BTreeSet::new();
    for line in block.lines().skip(1) {
        let trimmed = line.trim();
        if let Some((key, _)) = trimmed.split_once(" = ").or_else(|| trimmed.split_once(" =")) {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                keys.insert(key.to_string());
            }
        }
    }
    let first_line = block.lines().next().unwrap_or_default();
    for merged in first_line.split("local.").skip(1) {
        let merged: String = merged.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        keys.extend(local_env(main, &merged));
    }
    keys
}

#[test]
fn terraform_sets_exactly_what_each_function_reads() {
    let main = module_file("main.tf");
    let not_deployed: BTreeSet<&str> = NOT_DEPLOYED.iter().map(|(name, _)| *name).collect();
    for (function, read) in read_by_code() {
        let expected: BTreeSet<String> = read.difference(&not_deployed).map(|n| n.to_string()).collect();
        let mut deployed = local_env(&main, &format!("{function}_env"));
        deployed.retain(|name| !RUNNER.contains(&name.as_str()));
        let missing: Vec<_> = expected.difference(&deployed).collect();
        let extra: Vec<_> = deployed.difference(&expected).collect();
        assert!(missing.is_empty(), "{function}: read by the code, not set by Terraform: {missing:?}");
        assert!(extra.is_empty(), "{function}: set by Terraform, never read: {extra:?}");
    }
}

#[test]
fn every_function_has_its_service_image_and_build() {
    let functions_dir = format!("{}/../functions", env!("CARGO_MANIFEST_DIR"));
    let mut crates: Vec<String> = std::fs::read_dir(&functions_dir)
        .expect("functions/")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    crates.sort();
    assert_eq!(crates, ["approve", "chat", "list-eligibility", "mailer", "request-approval", "sweeper"]);
    let run = module_file("run.tf");
    let variables = module_file("variables.tf");
    let cloudbuild =
        std::fs::read_to_string(format!("{}/../cloudbuild.yaml", env!("CARGO_MANIFEST_DIR"))).expect("cloudbuild.yaml");
    for name in &crates {
        let key = name.replace('-', "_");
        let deployed = run.contains(&format!("image = var.images.{key}"))
            || run.contains(&format!("{key} = {{ image = var.images.{key}"));
        assert!(deployed, "{name}: no Cloud Run service or job uses var.images.{key}");
        assert!(variables.contains(&format!("    {key} ")), "{name}: no image in variable \"images\"");
        assert!(cloudbuild.contains(&format!("FUNCTION={name}")), "{name}: cloudbuild.yaml does not build its image");
    }
}

/// The mailer accepts a push token whose signature Cloud Run removed only because Cloud Run's
/// invoker check verified it: that check must be on, and only the push account may invoke.
#[test]
fn the_mailer_sits_behind_cloud_runs_invoker_check() {
    let main = module_file("main.tf");
    let run = module_file("run.tf");
    assert!(local_env(&main, "mailer_env").contains("PUSH_AUTH"));
    assert!(main.contains("PUSH_AUTH = \"cloud-run\""), "the mailer checks claims behind Cloud Run");
    let mailer = &run[run.find("resource \"google_cloud_run_v2_service\" \"mailer\"").expect("mailer service")..];
    let mailer = &mailer[..mailer.find("\n}\n").expect("end of block")];
    assert!(mailer.contains("invoker_iam_disabled = false"), "the invoker check stays on");
    let everything = format!("{main}{run}{}", module_file("pubsub.tf"));
    assert!(!everything.contains("allUsers") && !everything.contains("allAuthenticatedUsers"));
    let invokers: Vec<&str> = run
        .split("resource \"google_cloud_run_v2_service_iam_member\"")
        .skip(1)
        .filter(|block| block.contains("google_cloud_run_v2_service.mailer.name"))
        .collect();
    assert_eq!(invokers.len(), 1, "one invoker binding on the mailer");
    assert!(invokers[0].contains("member   = \"serviceAccount:${google_service_account.push.email}\""));
}

fn example_file(name: &str) -> String {
    let path = format!("{}/../terraform/examples/basic/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The block of `resource "TYPE" "NAME"` in `text`, up to its closing brace.
fn resource_block<'t>(text: &'t str, kind: &str, name: &str) -> &'t str {
    let start = text.find(&format!("resource \"{kind}\" \"{name}\"")).unwrap_or_else(|| panic!("{kind}.{name}"));
    let block = &text[start..];
    &block[..block.find("\n}\n").map_or(block.len(), |end| end + 2)]
}

/// Issue 21: Google creates a service agent lazily, so a grant to one on a fresh project can
/// fail ("does not exist"). Terraform creates the IAP and Pub/Sub agents first (beta provider)
/// and names them only through that resource, never as a hand-made address.
#[test]
fn service_agents_exist_before_they_are_granted() {
    let main = module_file("main.tf");
    let agents = resource_block(&main, "google_project_service_identity", "agents");
    assert!(agents.contains("provider   = google-beta"), "{agents}");
    for service in ["iap.googleapis.com", "pubsub.googleapis.com"] {
        assert!(agents.contains(&format!("\"{service}\"")), "{service}: {agents}");
    }
    let everything = format!("{main}{}{}", module_file("run.tf"), module_file("pubsub.tf"));
    assert!(!everything.contains("@gcp-sa-"), "a service agent's address made by hand");
    let iap = resource_block(&everything, "google_cloud_run_v2_service_iam_member", "iap_invokes");
    assert!(iap.contains("google_project_service_identity.agents[\"iap.googleapis.com\"].email"), "{iap}");
    assert!(
        module_file("pubsub.tf").contains("google_project_service_identity.agents[\"pubsub.googleapis.com\"].email"),
        "the Pub/Sub agent's grants"
    );
    assert!(module_file("versions.tf").contains("source  = \"hashicorp/google-beta\""), "the module needs google-beta");
    assert!(example_file("main.tf").contains("provider \"google-beta\" {"), "the example configures google-beta");
}

/// Issue 21: a project whose `(default)` database exists already (App Engine, an earlier use)
/// can name another database, import its `(default)`, or use an existing one as it is; the
/// default still creates `(default)`, and the functions read whichever it is.
#[test]
fn the_ledger_database_is_created_or_taken_as_it_exists() {
    let variables = module_file("variables.tf");
    let ledger = module_file("ledger.tf");
    let main = module_file("main.tf");
    let variable = |name: &str| {
        let start = variables.find(&format!("variable \"{name}\" {{")).unwrap_or_else(|| panic!("variable {name}"));
        &variables[start..start + variables[start..].find("\n}\n").expect("end")]
    };
    assert!(variable("ledger_database").contains("default     = \"(default)\""));
    assert!(variable("create_ledger_database").contains("default     = true"));
    let database = resource_block(&ledger, "google_firestore_database", "ledger");
    assert!(database.contains("count                   = var.create_ledger_database ? 1 : 0"), "{database}");
    assert!(database.contains("name                    = var.ledger_database"), "{database}");
    assert!(
        ledger.contains("from = google_firestore_database.ledger\n  to   = google_firestore_database.ledger[0]"),
        "an existing state keeps its database"
    );
    for (kind, name) in [("google_firestore_index", "requests"), ("google_firestore_field", "expire_at")] {
        let block = resource_block(&ledger, kind, name);
        let on_ledger = block
            .lines()
            .any(|l| l.trim_start().starts_with("database ") && l.trim_end().ends_with("= local.ledger_database"));
        assert!(on_ledger, "{kind}.{name} on the ledger's database");
    }
    assert!(
        main.contains("FIRESTORE_DATABASE    = \"projects/${var.project_id}/databases/${local.ledger_database}\""),
        "the functions read the database Terraform chose"
    );
}

/// `scripts/verify-deployment` with `args`, and `PATH` starting with `path` if given: its exit
/// code and what it printed.
fn verify_deployment(args: &[&str], path: Option<&std::path::Path>) -> (i32, String) {
    let script = format!("{}/../scripts/verify-deployment", env!("CARGO_MANIFEST_DIR"));
    let mut command = std::process::Command::new("python3");
    command.arg(&script).args(args);
    if let Some(path) = path {
        let inherited = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{inherited}", path.display()));
    }
    let output = command.output().expect("python3 runs scripts/verify-deployment");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), printed)
}

/// The smoke test for a real deployment cannot run here; its plan mode can, so it does not rot:
/// every service, every function's account with what docs/permissions.md says it needs, each
/// probe, and what no script can settle.
#[test]
fn verify_deployment_plans_every_check() {
    let (code, printed) = verify_deployment(
        &[
            "--plan",
            "--project=p",
            "--domain=jit.example.com",
            "--scope=organizations/1",
            "--iap-service-account=probe@p.iam.gserviceaccount.com",
            "--chat-spaces=spaces/A,spaces/B",
            "--group=reviewers@example.com",
        ],
        None,
    );
    assert_eq!(code, 0, "{printed}");
    for service in
        ["jit-list-eligibility", "jit-request-approval", "jit-approve", "jit-mailer", "jit-chat", "jit-sweeper"]
    {
        assert!(printed.contains(service), "{service}: {printed}");
    }
    for function in ["list-eligibility", "request-approval", "approve", "mailer", "sweeper", "chat"] {
        let account = format!("jit-{function}@p.iam.gserviceaccount.com");
        let row = printed.lines().find(|l| l.starts_with("permissions") && l.contains(&account));
        assert!(row.is_some_and(|r| r.contains("PLANNED")), "{account}: {printed}");
    }
    let row = |check: &str| printed.lines().find(|l| l.starts_with(check)).unwrap_or_default().to_string();
    assert!(row("permissions  ").contains("serviceusage.services.use"), "{printed}");
    assert!(printed.contains("resourcemanager.organizations.setIamPolicy"), "an organization scope's permissions");
    for planned in ["IAP in front", "no direct URL", "through IAP", "Chat requestId scope", "memberships.list type"] {
        assert!(row(planned).contains("PLANNED"), "{planned}: {printed}");
    }
    for cannot in ["Chat token issuer", "Chat reply deadline"] {
        assert!(row(cannot).contains("CANNOT"), "{cannot}: {printed}");
    }
}

/// The real mode against a stand-in `gcloud` that answers with canned policies (no network):
/// the roles granted to each account are expanded and compared with docs/permissions.md, and
/// Cloud Asset's `serviceusage.services.use` is looked for on the host project.
#[test]
fn verify_deployment_compares_granted_roles_with_the_documented_permissions() {
    let dir = std::env::temp_dir().join(format!("verify-deployment-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let gcloud = dir.join("gcloud");
    std::fs::write(&gcloud, FAKE_GCLOUD).expect("written");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&gcloud, std::fs::Permissions::from_mode(0o755)).expect("executable");
    let (code, printed) = verify_deployment(&["--project=p", "--domain=127.0.0.1:9", "--scope=projects/p"], Some(&dir));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1, "nothing answers on 127.0.0.1:9, so some checks fail: {printed}");
    let row = |check: &str, target: &str| {
        printed.lines().find(|l| l.starts_with(check) && l.contains(target)).unwrap_or_default().to_string()
    };
    for function in ["request-approval", "approve", "mailer", "sweeper", "chat"] {
        let row = row("permissions", &format!("jit-{function}@p.iam"));
        assert!(row.contains(" OK "), "{function}: {row}\n{printed}");
    }
    let list = row("permissions", "jit-list-eligibility@p.iam");
    assert!(list.contains("FAIL") && list.contains("serviceusage.services.use on the host project"), "{list}");
    assert!(row("iap agent invokes", "jit-approve").contains(" OK "), "{printed}");
    assert!(row("service ready", "jit-chat").contains(" OK "), "{printed}");
}

/// Answers the gcloud commands verify-deployment makes, for project `p` (number 123) and a
/// project scope: every grant Terraform makes, but list-eligibility's Service Usage Consumer.
const FAKE_GCLOUD: &str = r#"#!/usr/bin/env python3
import json, sys
args = [a for a in sys.argv[1:] if not a.startswith("--format")]
sa = lambda f: f"serviceAccount:jit-{f}@p.iam.gserviceaccount.com"
roles = {
    "roles/cloudasset.viewer": ["cloudasset.assets.analyzeIamPolicy", "cloudasset.assets.searchAllIamPolicies", "cloudasset.assets.searchAllResources"],
    "roles/serviceusage.serviceUsageConsumer": ["serviceusage.services.use"],
    "roles/resourcemanager.projectIamAdmin": ["resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"],
    "roles/datastore.user": ["datastore.entities.create", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"],
    "roles/datastore.viewer": ["datastore.entities.get", "datastore.entities.list"],
    "roles/pubsub.publisher": ["pubsub.topics.publish"],
    "roles/secretmanager.secretAccessor": ["secretmanager.versions.access"],
    "roles/iam.serviceAccountTokenCreator": ["iam.serviceAccounts.signJwt"],
    "roles/run.invoker": ["run.routes.invoke"],
}
deciders = ["request-approval", "approve", "chat"]
policies = {
    ("projects", "get-iam-policy"): [
        ("roles/cloudasset.viewer", ["list-eligibility", "sweeper"] + deciders),
        ("roles/resourcemanager.projectIamAdmin", deciders + ["sweeper"]),
        ("roles/datastore.user", ["sweeper"] + deciders),
        ("roles/datastore.viewer", ["list-eligibility"]),
        ("roles/serviceusage.serviceUsageConsumer", deciders + ["sweeper"]),
    ],
    ("topics", "get-iam-policy"): [("roles/pubsub.publisher", deciders + ["sweeper"])],
    ("secrets", "get-iam-policy"): [("roles/secretmanager.secretAccessor", ["mailer"])],
    ("service-accounts", "get-iam-policy"): [("roles/iam.serviceAccountTokenCreator", ["request-approval"])],
}
def answer(value):
    print(value if isinstance(value, str) else json.dumps(value))
    sys.exit(0)
if args[:2] == ["config", "get-value"]:
    answer("p" if args[2] == "project" else "operator@example.com")
if args[:2] == ["auth", "print-identity-token"]:
    answer("identity-token")
if args[:3] == ["run", "services", "describe"]:
    answer({"status": {"url": "https://127.0.0.1:9", "conditions": [{"type": "Ready", "status": "True"}]}})
if args[:3] == ["run", "jobs", "describe"]:
    answer({})
if args[:3] == ["run", "services", "get-iam-policy"]:
    answer({"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:service-123@gcp-sa-iap.iam.gserviceaccount.com"]}]})
if args[:2] == ["projects", "describe"]:
    answer({"projectNumber": "123"})
if args[:3] == ["iam", "roles", "describe"]:
    answer({"includedPermissions": roles[args[3]]})
for (kind, verb), bindings in policies.items():
    if kind in args[:2] and verb in args[:3]:
        answer({"bindings": [{"role": role, "members": [sa(f) for f in functions]} for role, functions in bindings]})
sys.stderr.write("fake gcloud: not answered: " + " ".join(args) + "\n")
sys.exit(1)
"#;
