//! Defects that once passed every test: a request that crashed a function, time-bound
//! eligibility the bookkeeping did not recognise, ambiguous IAP assertions, and a local front
//! door that redirected off-site and answered any host. Each attack goes through the local
//! run or every function it applies to, and the function is shown to answer afterwards.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{AUDIENCE, System};
use crate::support::{ALICE, CAROL};

/// An entitlement ID whose resource condition nests parentheses thousands deep: about 13 KB.
fn deep_id() -> String {
    let deep = format!("{}true{}", "(".repeat(5_000), ")".repeat(5_000));
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deep);
    format!("project-1:roles/storage.admin:{encoded}")
}

async fn start_local() -> local::Running {
    local::start(local::Options::default()).await.expect("local run starts")
}

#[tokio::test]
async fn nested_conditions_get_400_and_every_function_still_answers() {
    let local = start_local().await;
    let http = reqwest::Client::new();
    let id = deep_id();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{}{path}", local.url))
            .header("x-local-user", CAROL)
            .header("x-jitaccess", "1");
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("the front door answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let attacks = [
        (reqwest::Method::GET, format!("/api/projects/project-1/peers?id={id}"), None),
        (
            reqwest::Method::POST,
            "/api/projects/project-1/roles/self-activate".to_string(),
            Some(json!({"entitlementIds": [id], "justification": "BUG-1", "activationTimeout": 30})),
        ),
        (
            reqwest::Method::POST,
            "/api/projects/project-1/roles/request".to_string(),
            Some(json!({"entitlementId": id, "justification": "BUG-1", "peers": [ALICE], "activationTimeout": 30})),
        ),
    ];
    for (method, path, body) in attacks {
        let (status, body) = call(method, path.clone(), body).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("entitlement_invalid")), "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nests brackets more than 64 deep"), "{message}");
    }
    // Every function is still there.
    for path in ["/api/policy", "/api/projects/project-1/roles"] {
        assert_eq!(call(reqwest::Method::GET, path.to_string(), None).await.0, 200, "{path}");
    }
    let (status, _) = call(
        reqwest::Method::POST,
        "/api/projects/project-1/roles/self-activate".into(),
        Some(json!({"entitlementIds": ["project-1:roles/storage.admin"], "justification": "BUG-1", "activationTimeout": 30})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(reqwest::Method::GET, "/api/activation-request?activation=x.y.z".into(), None).await;
    assert!((400..500).contains(&status), "approve answers: {status}");
}

const TIME_BOUND: &str = "has({}.jitAccessConstraint) && request.time < timestamp(\"2030-01-01T00:00:00Z\")";

/// Gives Carol self-approval eligibility for roles/bigquery.admin on project-2 until 2030.
async fn grant_time_bound_eligibility(system: &System) {
    let mut policy = system.backend.policy("projects/project-2").await;
    policy.bindings.push(common::policy::Binding {
        role: "roles/bigquery.admin".into(),
        members: vec![format!("user:{CAROL}")],
        condition: Some(common::policy::Expr {
            expression: TIME_BOUND.into(),
            title: "Eligible until the end of the contract".into(),
            description: String::new(),
            location: String::new(),
        }),
    });
    let url = system.backend.url("/v3/projects/project-2:setIamPolicy");
    let response = system.backend.http.post(url).json(&json!({"policy": policy})).send().await.expect("answers");
    assert_eq!(response.status(), 200);
}

fn activations_of(policy: &common::policy::Policy, member: &str, role: &str) -> usize {
    policy
        .bindings
        .iter()
        .filter(|b| b.role == role && b.members == [format!("user:{member}")])
        .filter(|b| b.condition.as_ref().is_some_and(|c| c.title == common::activation::ACTIVATION_TITLE))
        .count()
}

#[tokio::test]
async fn time_bound_eligibility_activates_replaces_shows_status_and_is_swept() {
    let system = System::start().await;
    grant_time_bound_eligibility(&system).await;
    let roles = system.get(CAROL, system.list, "/api/projects/project-2/roles").await;
    let entitlement = roles.body["entitlements"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == "roles/bigquery.admin"))
        .cloned()
        .unwrap_or_else(|| panic!("eligible: {roles:?}"));
    assert_eq!(entitlement["status"], "INACTIVE");
    let id = entitlement["id"].as_str().expect("id").to_string();
    assert!(id.split(':').count() == 3, "the time clause is the resource condition: {id}");

    // Activate twice: the second replaces the first, so one binding, and it shows as active.
    for _ in 0..2 {
        let body = json!({"entitlementIds": [id], "justification": "BUG-1", "activationTimeout": 30});
        let reply = system.post(CAROL, system.request, "/api/projects/project-2/roles/self-activate", body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    let policy = system.backend.policy("projects/project-2").await;
    assert_eq!(activations_of(&policy, CAROL, "roles/bigquery.admin"), 1, "replaced, not added: {policy:?}");
    let binding = policy.bindings.iter().rev().find(|b| b.role == "roles/bigquery.admin").expect("activation");
    let expression = &binding.condition.as_ref().expect("condition").expression;
    assert!(expression.ends_with("&& (request.time < timestamp(\"2030-01-01T00:00:00Z\"))"), "{expression}");
    let roles = system.get_fresh(CAROL, system.list, "/api/projects/project-2/roles").await;
    let status = roles.body["entitlements"].as_array().and_then(|all| all.iter().find(|e| e["id"] == id.as_str()));
    assert_eq!(status.map(|e| e["status"].clone()), Some(json!("ACTIVE")), "{roles:?}");

    // An ended activation of it is swept; the eligible binding stays.
    let writer = common::gcp::iam::IamWriter::new(&system.backend.settings).await.expect("client");
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let at = |s: i64| common::timestamp::Timestamp::from_unix_seconds(s).expect("time");
    let ended = common::activation::Activation {
        request: "jit-endedByTest".into(),
        beneficiary: crate::support::email(CAROL),
        entitlement: common::entitlement::EntitlementId::parse(&id).expect("id"),
        window: common::activation::ActivationWindow::new(at(now - 10_000), at(now - 7_200)).expect("window"),
        approval: common::activation::Approval::SelfApproved,
        justification: common::justification::JustificationPolicy::new(".*", "").expect("p").check("x").expect("ok"),
    };
    crate::support::activate(&writer, &ended, "test").await.expect("written");
    let policy = system.backend.policy("projects/project-2").await;
    assert_eq!(activations_of(&policy, CAROL, "roles/bigquery.admin"), 2, "each grant owns its binding");
    let mut pairs = system.backend.emulator.environment();
    pairs.push(("RESOURCE_SCOPE", crate::support::SCOPE.to_string()));
    pairs.push(("BASE_URL", "https://jit.example.com".to_string()));
    let mut env = common::config::Env::new(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
    let config = sweeper::Config::read(&mut env);
    env.finish().expect("valid");
    let summary = sweeper::run(&config, common::timestamp::Timestamp::now()).await.expect("runs");
    assert_eq!(summary.bindings_removed, 1, "{summary}");
    let policy = system.backend.policy("projects/project-2").await;
    assert_eq!(activations_of(&policy, CAROL, "roles/bigquery.admin"), 1, "the ended one went, the live one stays");
    assert!(policy.bindings.iter().any(|b| b.condition.as_ref().is_some_and(|c| c.expression == TIME_BOUND)));
}

#[tokio::test]
async fn two_iap_assertions_are_refused_by_every_function() {
    let system = System::start().await;
    let alice = system.assertion(ALICE, AUDIENCE).await;
    let carol = system.assertion(CAROL, AUDIENCE).await;
    for (at, method, path) in [
        (system.list, "GET", "/api/policy"),
        (system.request, "POST", "/api/projects/project-1/roles/self-activate"),
        (system.approve, "GET", "/api/activation-request?activation=x"),
    ] {
        let headers = [
            ("x-goog-iap-jwt-assertion", carol.as_str()),
            ("x-goog-iap-jwt-assertion", alice.as_str()),
            ("x-jitaccess", "1"),
        ];
        let reply = system.send(method, at, path, Some(json!({})), &headers).await;
        assert_eq!((reply.status, reply.code()), (401, "iap_assertion_ambiguous"), "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn the_front_door_stays_on_site_and_answers_only_loopback_hosts() {
    let local = start_local().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for next in ["/\\evil.com", "//evil.com", "/\\/evil.com", "https://evil.com", "/\t/evil.com"] {
        let encoded: String = form_urlencoded_encode(next);
        let url = format!("{}/_local/signin?as={ALICE}&next={encoded}", local.url);
        let response = http.get(url).send().await.expect("answers");
        let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default();
        assert_eq!(location, "/", "next={next:?} must not leave the site");
    }
    let response =
        http.get(format!("{}/_local/signin?as={ALICE}&next=/api/policy", local.url)).send().await.expect("answers");
    assert_eq!(response.headers().get("location").and_then(|l| l.to_str().ok()), Some("/api/policy"));

    // A DNS-rebinding page reaches 127.0.0.1 with its own name in Host: refused.
    for host in ["evil.example", "127.0.0.1.evil.example:8080"] {
        let response = http
            .get(format!("{}/api/policy", local.url))
            .header("host", host)
            .header("x-local-user", ALICE)
            .header("x-jitaccess", "1")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 403, "{host}");
    }
    let port = local.url.rsplit(':').next().expect("port");
    let response = http
        .get(format!("{}/api/policy", local.url))
        .header("host", format!("localhost:{port}"))
        .header("x-local-user", ALICE)
        .header("x-jitaccess", "1")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
}

fn form_urlencoded_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn a_well_formed_forged_resource_condition_is_refused_by_every_function() {
    // `true` parses fine, but no binding grants it: the ID is only a claim, matched against the
    // caller's real entitlements.
    let system = System::start().await;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("true");
    let forged_jit = format!("project-1:roles/storage.admin:{encoded}");
    let forged_mpa = format!("project-1:roles/compute.admin:{encoded}");
    let before = system.backend.policy("projects/project-1").await;
    let reply = system
        .post(
            CAROL,
            system.request,
            "/api/projects/project-1/roles/self-activate",
            json!({"entitlementIds": [forged_jit], "justification": "BUG-1", "activationTimeout": 30}),
        )
        .await;
    assert_eq!((reply.status, reply.code()), (403, "not_eligible"), "{reply:?}");
    let reply = system
        .post(ALICE, system.request, "/api/projects/project-1/roles/request",
            json!({"entitlementId": forged_mpa, "justification": "BUG-1", "peers": [crate::support::BOB], "activationTimeout": 30}))
        .await;
    assert_eq!((reply.status, reply.code()), (403, "not_eligible"), "{reply:?}");
    let reply = system.get(ALICE, system.list, &format!("/api/projects/project-1/peers?id={forged_mpa}")).await;
    assert_eq!((reply.status, reply.code()), (403, "not_eligible"), "{reply:?}");
    // approve: a token naming the forged entitlement, signed as an attacker with Token Creator
    // would: the beneficiary does not hold it, so nothing is granted.
    let now = common::timestamp::Timestamp::now().unix_seconds();
    let account = "jitaccess@jit-project.iam.gserviceaccount.com";
    let token = system
        .sign(&json!({"jti": "mpa-forged", "iss": account, "aud": account, "iat": now, "nbf": now, "exp": now + 3600,
            "beneficiary": ALICE, "reviewers": [crate::support::BOB],
            "entitlement": {"project": "project-1", "role": "roles/compute.admin", "resourceCondition": "true"},
            "justification": "BUG-1", "start": now, "end": now + 1800}))
        .await;
    let path = format!("/api/activation-request?activation={token}");
    let reply = system.call(crate::support::BOB, "POST", system.approve, &path, None).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(system.backend.policy("projects/project-1").await, before, "nothing written");
}
