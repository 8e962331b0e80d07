//! Each function's Google API calls map to IAM permissions, and Terraform grants each function's
//! service account exactly the roles those permissions need: no call without its role, no role
//! without a call. The calls are observed, not declared: each function's flows run against the
//! emulator, which counts every call by API and method. docs/permissions.md is the same table
//! for people, and this test checks that it names every call.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::harness::System;
use crate::support::{ALICE, BOB, CAROL};

const DAVE: &str = "dave@example.com";
const ERIN: &str = "erin@example.com";

/// The sandbox folder's roles (emulator/organization.yaml).
const SANDBOX_JIT: &str = "folders/200000000002:roles/resourcemanager.folderEditor";
const SANDBOX_MPA: &str = "folders/200000000002:roles/resourcemanager.folderAdmin";

/// Every permission each emulated call needs, as Google's access-control pages list them
/// (docs/permissions.md cites each); empty for calls that need none (public key sets,
/// SendGrid) or none in IAM (Cloud Identity, Chat).
fn permissions(call: &str) -> &'static [&'static str] {
    // asset-inventory/docs/roles-permissions: analyzeIamPolicy and
    // batchGetEffectiveIamPolicies need all three asset permissions, and "All Cloud Asset
    // Inventory calls require the serviceusage.services.use permission".
    const ANALYSIS: &[&str] = &[
        "cloudasset.assets.analyzeIamPolicy",
        "cloudasset.assets.searchAllResources",
        "cloudasset.assets.searchAllIamPolicies",
        "serviceusage.services.use",
    ];
    match call {
        "asset.analyzeIamPolicy" | "asset.batchGetEffectiveIamPolicies" => ANALYSIS,
        "asset.searchAllIamPolicies" => &["cloudasset.assets.searchAllIamPolicies", "serviceusage.services.use"],
        "asset.searchAllResources" => &["cloudasset.assets.searchAllResources", "serviceusage.services.use"],
        "resourcemanager.getIamPolicy" => &["resourcemanager.projects.getIamPolicy"],
        "resourcemanager.setIamPolicy" => &["resourcemanager.projects.setIamPolicy"],
        "resourcemanager.searchProjects" => &["resourcemanager.projects.get"],
        "resourcemanager.searchFolders" => &["resourcemanager.folders.get"],
        "resourcemanager.folders.getIamPolicy" => &["resourcemanager.folders.getIamPolicy"],
        "resourcemanager.folders.setIamPolicy" => &["resourcemanager.folders.setIamPolicy"],
        "resourcemanager.organizations.getIamPolicy" => &["resourcemanager.organizations.getIamPolicy"],
        "resourcemanager.organizations.setIamPolicy" => &["resourcemanager.organizations.setIamPolicy"],
        "iamcredentials.signJwt" => &["iam.serviceAccounts.signJwt"],
        "pubsub.publish" => &["pubsub.topics.publish"],
        // firestore/docs/security/iam: a create (exists: false) needs create, a write with an
        // updateTime precondition update, a write with none (the chatUsers upsert) both.
        "firestore.get" => &["datastore.entities.get"],
        "firestore.commit" => &["datastore.entities.create", "datastore.entities.update"],
        "firestore.runQuery" => &["datastore.entities.get", "datastore.entities.list"],
        "secretmanager.accessSecretVersion" => &["secretmanager.versions.access"],
        call if call.starts_with("jwks.") || call.starts_with("sendgrid.") => &[],
        // Reading groups is a Google Workspace admin role (Groups Reader), not an IAM role:
        // docs/permissions.md says so, and Terraform cannot grant it.
        call if call.starts_with("cloudidentity.") => &[],
        // A Chat app posts as itself (app authentication, `chat.bot`): no IAM role; the
        // app's configuration in the Chat API's console page names its service account.
        call if call.starts_with("chat.") => &[],
        other => panic!("no permission known for {other}: add it here and to docs/permissions.md"),
    }
}

/// The permissions of the roles Terraform grants that matter here (from Google's predefined
/// roles reference; each role holds more).
fn role_permissions(role: &str) -> &'static [&'static str] {
    match role {
        "roles/cloudasset.viewer" => &[
            "cloudasset.assets.analyzeIamPolicy",
            "cloudasset.assets.searchAllIamPolicies",
            "cloudasset.assets.searchAllResources",
        ],
        "roles/resourcemanager.projectIamAdmin" => &[
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
        ],
        "roles/resourcemanager.folderIamAdmin" => &[
            "resourcemanager.folders.get",
            "resourcemanager.folders.getIamPolicy",
            "resourcemanager.folders.setIamPolicy",
        ],
        // Terraform's custom role (main.tf), granted at each organization scope.
        "jitAccessContainerIamAdmin" => &[
            "resourcemanager.folders.get",
            "resourcemanager.folders.getIamPolicy",
            "resourcemanager.folders.setIamPolicy",
            "resourcemanager.organizations.get",
            "resourcemanager.organizations.getIamPolicy",
            "resourcemanager.organizations.setIamPolicy",
        ],
        "roles/browser" => &["resourcemanager.projects.get", "resourcemanager.folders.get"],
        "roles/iam.serviceAccountTokenCreator" => {
            &["iam.serviceAccounts.signJwt", "iam.serviceAccounts.getOpenIdToken"]
        }
        "roles/pubsub.publisher" => &["pubsub.topics.publish"],
        "roles/secretmanager.secretAccessor" => &["secretmanager.versions.access"],
        "roles/datastore.viewer" => &["datastore.entities.get", "datastore.entities.list"],
        // Granted on the host project: Cloud Asset checks it where the call is billed.
        "roles/serviceusage.serviceUsageConsumer" => &["serviceusage.services.use"],
        "roles/datastore.user" => &[
            "datastore.entities.get",
            "datastore.entities.create",
            "datastore.entities.update",
            "datastore.entities.list",
        ],
        other => panic!("Terraform grants {other}: add its permissions here"),
    }
}

fn terraform() -> String {
    ["main.tf", "pubsub.tf", "run.tf", "ledger.tf"]
        .iter()
        .map(|name| {
            let path = format!("{}/../terraform/modules/jit-access/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        })
        .collect()
}

/// Roles Terraform grants each function's account: one-line grants in `scope_grants`, and
/// resource blocks whose member is a function account (directly or through `for_each`).
fn granted_roles() -> BTreeMap<String, BTreeSet<String>> {
    let text = terraform();
    let mut grants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let quoted_after = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        let rest = rest.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
        Some(rest[..rest.find('"')?].to_string())
    };
    for line in text.lines().filter(|l| l.contains("role = ") && l.contains("function[\"")) {
        let role = quoted_after(line, "role").expect("role");
        let function = line.split("function[\"").nth(1).and_then(|r| r.split('"').next()).expect("function");
        grants.entry(function.to_string()).or_default().insert(role);
    }
    for block in text.split("\nresource ").skip(1) {
        let block = &block[..block.find("\n}\n").unwrap_or(block.len())];
        let Some(role) =
            block.lines().find(|l| l.trim_start().starts_with("role ")).and_then(|l| quoted_after(l, "role"))
        else {
            continue;
        };
        let Some(member) = block.lines().find(|l| l.trim_start().starts_with("member ")) else { continue };
        let functions: Vec<String> = if member.contains("function[each.key]") {
            let for_each = block.lines().find(|l| l.contains("for_each")).expect("for_each");
            for_each.split('"').skip(1).step_by(2).map(str::to_string).collect()
        } else if let Some(name) = member.split("function[\"").nth(1).and_then(|r| r.split('"').next()) {
            vec![name.to_string()]
        } else {
            continue;
        };
        for function in functions {
            grants.entry(function).or_default().insert(role.clone());
        }
    }
    grants
}

/// The calls the emulator counted since the last reset.
async fn calls(system: &System) -> BTreeSet<String> {
    let counted: BTreeMap<String, u64> = system.backend.get_json("/_emulator/calls").await;
    counted.into_iter().filter(|(_, n)| *n > 0).map(|(call, _)| call).collect()
}

async fn reset(system: &System) {
    let response = system.backend.http.delete(system.backend.url("/_emulator/calls")).send().await.expect("answers");
    assert!(response.status().is_success());
}

/// The chat function as deployed, its reviewers in Google Chat: each of `decisions`
/// (reviewer, request) is posted to the reviewer by the event push and approved with a click.
async fn chat_decides(system: &System, decisions: &[(&str, &str)]) {
    let mut pairs = system.backend.emulator.environment();
    pairs.extend([
        ("RESOURCE_SCOPE", crate::support::SCOPE.to_string()),
        ("NOTIFICATION_TOPIC", crate::harness::TOPIC.to_string()),
        ("BASE_URL", "https://jit.example.com".to_string()),
        ("CHAT_AUDIENCE", "123456789012".to_string()),
        ("PUSH_AUTH", "false".to_string()),
    ]);
    let mut env = common::config::Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = chat::Config::read(&mut env);
    env.finish().expect("valid");
    let app = chat::router(chat::AppState::new(config).await.expect("chat starts"));
    let at = common::runner::spawn_local(common::runner::app(app)).await.expect("binds");
    let http = &system.backend.http;
    let configured = json!({"url": format!("http://{at}/"), "audience": "123456789012"});
    http.put(system.backend.url("/_emulator/chat/app")).json(&configured).send().await.expect("answers");
    for (reviewer, id) in decisions {
        let added = json!({"type": "ADDED_TO_SPACE", "email": reviewer});
        assert_eq!(system.backend.post_json("/_emulator/chat/events", &added).await["status"], 200);
        let event = json!({"type": "RequestActivation", "attributes": {"activation_id": id}});
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(event.to_string());
        let push = json!({"message": {"data": data, "messageId": id}, "subscription": "s"});
        let response = http.post(format!("http://{at}/events")).json(&push).send().await.expect("answers");
        assert_eq!(response.status(), 204);
        let messages: Vec<Value> = system.backend.get_json("/_emulator/chat").await;
        let message = messages.iter().find(|m| m["readers"] == json!([reviewer])).expect("a card")["name"].clone();
        let click =
            json!({"type": "CARD_CLICKED", "email": reviewer, "message": message, "function": "approve", "id": id});
        let answer = system.backend.post_json("/_emulator/chat/events", &click).await;
        assert!(answer["reply"]["cardsV2"].to_string().contains("ACTIVE"), "{answer}");
    }
}

/// What each function calls, observed while it does its whole job.
async fn observed() -> BTreeMap<String, BTreeSet<String>> {
    let mut observed = BTreeMap::new();
    let system = System::start_with(&[("AVAILABLE_PROJECTS_QUERY", "state:ACTIVE")]).await;

    reset(&system).await;
    for path in ["/api/policy", "/api/projects", "/api/projects/project-1/roles"] {
        assert_eq!(system.get(ALICE, system.list, path).await.status, 200, "{path}");
    }
    let peers = "/api/projects/project-1/peers?id=project-1:roles/compute.admin";
    assert_eq!(system.get(ALICE, system.list, peers).await.status, 200);
    assert_eq!(system.get(ALICE, system.list, "/api/requests?view=mine").await.status, 200);
    observed.insert("list_eligibility".to_string(), calls(&system).await);

    reset(&system).await;
    let body =
        json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1", "activationTimeout": 30});
    assert_eq!(
        system.post(CAROL, system.request, "/api/projects/project-1/roles/self-activate", body).await.status,
        200
    );
    let body = json!({"entitlementIds": [SANDBOX_JIT], "justification": "BUG-1", "activationTimeout": 30});
    let reply = system.post(CAROL, system.request, "/api/folders/200000000002/roles/self-activate", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = json!({"entitlementId": "project-1:roles/compute.admin", "justification": "BUG-1", "peers": [BOB], "activationTimeout": 30});
    assert_eq!(system.post(ALICE, system.request, "/api/projects/project-1/roles/request", body).await.status, 200);
    let body = json!({"entitlementId": SANDBOX_MPA, "justification": "BUG-1", "peers": [BOB], "activationTimeout": 30});
    let reply = system.post(ALICE, system.request, "/api/folders/200000000002/roles/request", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    observed.insert("request_approval".to_string(), calls(&system).await);

    // Bob approves the folder request in Google Chat, Erin Dave's request for a project role:
    // the chat function decides as approve does, on a project and on a folder.
    let events = system.events().await;
    let asked: Vec<&Value> = events.iter().filter(|e| e["type"] == "RequestActivation").collect();
    assert_eq!(asked.len(), 2, "a project request and a folder request");
    let folder_request =
        asked.iter().find(|e| e["attributes"]["project_id"] == "folders/200000000002").expect("folder");
    let folder_id = folder_request["attributes"]["activation_id"].as_str().expect("id").to_string();
    let body = json!({"entitlementId": "project-1:roles/logging.admin", "justification": "BUG-1", "peers": [ERIN], "activationTimeout": 30});
    let reply = system.post(DAVE, system.request, "/api/projects/project-1/roles/request", body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let dave_id = reply.body["entitlements"][0]["activationId"].as_str().expect("id").to_string();
    reset(&system).await;
    chat_decides(&system, &[(BOB, &folder_id), (ERIN, &dave_id)]).await;
    observed.insert("chat".to_string(), calls(&system).await);

    // Bob approves the project request by its link, and revokes the folder grant.
    let links: Vec<String> =
        asked.iter().filter_map(|e| e["attributes"]["action_url"].as_str()).map(str::to_string).collect();
    reset(&system).await;
    let link = links.iter().find(|l| !l.contains(&folder_id)).expect("the project request's link");
    let path = format!("/api/activation-request?{}", link.split('?').nth(1).expect("query"));
    let reply = system.call(BOB, "GET", system.approve, &path, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = system.call(BOB, "POST", system.approve, &path, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let revoke = format!("/api/requests/{folder_id}/revoke");
    let reply = system.post(BOB, system.approve, &revoke, json!({"reason": "done"})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    observed.insert("approve".to_string(), calls(&system).await);

    // The mailer reads its key at start, then sends: a fresh one, counted from its start.
    reset(&system).await;
    let mut pairs = system.backend.emulator.environment();
    pairs.extend([
        ("SENDGRID_API_KEY_SECRET", "projects/jit-project/secrets/sendgrid-api-key".to_string()),
        ("SMTP_SENDER_ADDRESS", "jit@example.com".to_string()),
        ("BASE_URL", "https://jit.example.com".to_string()),
        ("PUSH_AUTH", "false".to_string()),
    ]);
    let mut env = common::config::Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = mailer::Config::read(&mut env);
    env.finish().expect("valid");
    drop(mailer::AppState::new(config).await.expect("mailer starts"));
    observed.insert("mailer".to_string(), calls(&system).await);

    // Carol activates the sandbox role again while Google is down: the activation stays
    // ACTIVATING, for the sweeper to complete (it reads eligibility afresh first).
    system.backend.inject("resourcemanager", "folders.setIamPolicy", 503, 3).await;
    let body = json!({"entitlementIds": [SANDBOX_JIT], "justification": "BUG-1", "activationTimeout": 30});
    let reply = system.post(CAROL, system.request, "/api/folders/200000000002/roles/self-activate", body).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    // Carol's grant loses its binding behind the ledger's back: the sweeper flags it and says so.
    let mut policy = system.backend.policy("projects/project-1").await;
    policy.bindings.retain(|b| !(b.role == "roles/storage.admin" && b.members == [format!("user:{CAROL}")]));
    let url = system.backend.url("/v3/projects/project-1:setIamPolicy");
    system.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
    reset(&system).await;
    let mut pairs = system.backend.emulator.environment();
    pairs.push(("RESOURCE_SCOPE", crate::support::SCOPE.to_string()));
    pairs.push(("NOTIFICATION_TOPIC", crate::harness::TOPIC.to_string()));
    pairs.push(("BASE_URL", "https://jit.example.com".to_string()));
    let mut env = common::config::Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = sweeper::Config::read(&mut env);
    env.finish().expect("valid");
    sweeper::run(&config, common::timestamp::Timestamp::now()).await.expect("sweeps");
    observed.insert("sweeper".to_string(), calls(&system).await);
    observed
}

#[tokio::test]
async fn terraform_grants_each_function_exactly_the_roles_its_calls_need() {
    let observed = observed().await;
    let grants = granted_roles();
    let docs = std::fs::read_to_string(format!("{}/../docs/permissions.md", env!("CARGO_MANIFEST_DIR")))
        .expect("docs/permissions.md");
    for (function, calls) in &observed {
        let roles = grants.get(function).cloned().unwrap_or_default();
        let needed: BTreeSet<&str> = calls.iter().flat_map(|call| permissions(call).iter().copied()).collect();
        let documented = |call: &str| {
            !permissions(call).is_empty() || call.starts_with("cloudidentity.") || call.starts_with("chat.")
        };
        for call in calls.iter().filter(|call| documented(call)) {
            let start = format!("| {} | `{call}` |", function.replace('_', "-"));
            let row = docs.lines().find(|line| line.starts_with(&start));
            let row = row.unwrap_or_else(|| panic!("docs/permissions.md lacks the row starting {start}"));
            for permission in permissions(call) {
                assert!(row.contains(&format!("`{permission}`")), "docs/permissions.md: {start} names no {permission}");
            }
        }
        for permission in &needed {
            assert!(
                roles.iter().any(|role| role_permissions(role).contains(permission)),
                "{function} calls what needs {permission}, but Terraform grants only {roles:?}"
            );
        }
        for role in &roles {
            assert!(
                role_permissions(role).iter().any(|p| needed.contains(p)),
                "Terraform grants {function} {role}, which none of its calls ({calls:?}) needs"
            );
        }
    }
    assert_eq!(observed.keys().collect::<Vec<_>>(), grants.keys().collect::<Vec<_>>(), "every function is covered");
}

/// Issue 21: Cloud Asset checks `serviceusage.services.use` on the project its calls are billed
/// to, the host project where the functions' accounts live; the grant must be there, not on the
/// scope, for every function that calls Cloud Asset.
#[test]
fn service_usage_consumer_is_granted_on_the_host_project() {
    let text = terraform();
    let blocks: Vec<&str> = text
        .split("\nresource ")
        .filter(|block| block.contains("role     = \"roles/serviceusage.serviceUsageConsumer\""))
        .collect();
    assert_eq!(blocks.len(), 1, "one grant of Service Usage Consumer");
    let block = &blocks[0][..blocks[0].find("\n}\n").unwrap_or(blocks[0].len())];
    assert!(block.starts_with("\"google_project_iam_member\""), "{block}");
    assert!(block.contains("project  = var.project_id"), "on the host project: {block}");
    let grants = granted_roles();
    for function in ["list_eligibility", "request_approval", "approve", "chat"] {
        assert!(
            grants[function].contains("roles/serviceusage.serviceUsageConsumer"),
            "{function} calls Cloud Asset without serviceusage.services.use"
        );
    }
}
