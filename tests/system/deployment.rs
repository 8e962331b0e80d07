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
        assert!(block.contains("database   = local.ledger_database"), "{kind}.{name} on the ledger's database");
    }
    assert!(
        main.contains("FIRESTORE_DATABASE    = \"projects/${var.project_id}/databases/${local.ledger_database}\""),
        "the functions read the database Terraform chose"
    );
}
