//! The whole system on one machine, with no cloud account: the emulator of the Google APIs,
//! the four functions' routers (the same code as production, configured to use the emulator),
//! and a front door ([`front_door`]) that does what the load balancer and IAP do.

pub mod cloud_run;
pub mod front_door;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use common::config::Env;
use common::runner::Function as _;
use emulator::{Emulator, World, WorldFile};

/// The IAP audience of the local front door.
pub const LOCAL_AUDIENCE: &str = "/projects/0/global/backendServices/local";
pub const PUSH_AUDIENCE: &str = "http://mailer.local/";
pub const PUSH_ACCOUNT: &str = "jit-push@local.iam.gserviceaccount.com";
/// The Chat app's push audience and its authentication audience (a project number).
pub const CHAT_PUSH_AUDIENCE: &str = "http://chat.local/events";
pub const CHAT_AUDIENCE: &str = "123456789012";
const DEFAULT_TOPIC: &str = "projects/jit-project/topics/jit-events";
const POLICIES_FILE: &str = "policies.json";

/// Settings a person may tune for the local run through the environment.
const PASSED_THROUGH: &[&str] = &[
    "ACTIVATION_TIMEOUT",
    "ACTIVATION_REQUEST_TIMEOUT",
    "JUSTIFICATION_PATTERN",
    "JUSTIFICATION_HINT",
    "ACTIVATION_REQUEST_MIN_REVIEWERS",
    "ACTIVATION_REQUEST_MAX_REVIEWERS",
    "ACTIVATION_REQUEST_MAX_ROLES",
    "NOTIFICATION_TIMEZONE",
    "NOTIFY_SELF_APPROVED",
    "AVAILABLE_PROJECTS_QUERY",
    "RESOURCE_CATALOG",
    "APPROVAL_POLICY",
    "ADMINISTRATORS",
    "BREAK_GLASS_LIMIT",
    "POLICY_CACHE_TIMEOUT",
    "LISTING_BUDGET_BURST",
    "LISTING_BUDGET_PER_MINUTE",
];

#[derive(Debug, Clone)]
pub struct Options {
    /// The front door; 0 picks a free port.
    pub port: u16,
    pub emulator_port: u16,
    /// The organization file; the embedded example when `None`.
    pub organization: Option<String>,
    /// Print captured mail to the console.
    pub echo_mail: bool,
    /// Keep IAM policies here between runs (`policies.json`); in memory only when `None`.
    pub state: Option<std::path::PathBuf>,
    /// Settings for the functions, over those passed through from the environment (tests
    /// use it for an approval policy, say).
    pub settings: Vec<(&'static str, String)>,
    /// Run the sweeper job this often, as Cloud Scheduler does (every minute in production);
    /// `None`: never (tests that sweep when they choose).
    pub sweep_every: Option<std::time::Duration>,
}

impl Default for Options {
    /// Free ports, the example organization, mail not printed, nothing kept.
    fn default() -> Options {
        Options {
            port: 0,
            emulator_port: 0,
            organization: None,
            echo_mail: false,
            state: None,
            settings: Vec::new(),
            sweep_every: None,
        }
    }
}

/// A running local system.
#[derive(Debug, Clone)]
pub struct Running {
    pub url: String,
    pub emulator: Emulator,
    pub users: Vec<String>,
}

pub async fn start(options: Options) -> anyhow::Result<Running> {
    let yaml = match &options.organization {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => emulator::DEFAULT_WORLD.to_string(),
    };
    let file = WorldFile::parse(&yaml).context("reading the organization file")?;
    let scope = format!("organizations/{}", file.organization.id);
    let topic = file.topics.first().cloned().unwrap_or_else(|| DEFAULT_TOPIC.to_string());
    let emulator_listener = tokio::net::TcpListener::bind(("127.0.0.1", options.emulator_port))
        .await
        .with_context(|| format!("binding the emulator to 127.0.0.1:{}", options.emulator_port))?;
    let door_listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("binding the front door to 127.0.0.1:{}", options.port))?;
    let url = format!("http://{}", door_listener.local_addr()?);
    let mut world = World::new(file)?;
    if let Some(saved) = options.state.as_ref().map(|dir| dir.join(POLICIES_FILE)).filter(|p| p.exists()) {
        let text = std::fs::read_to_string(&saved).with_context(|| format!("reading {}", saved.display()))?;
        let policies = serde_json::from_str(&text).with_context(|| format!("reading {}", saved.display()))?;
        for unknown in world.restore_policies(policies) {
            tracing::warn!(resource = %unknown, "saved policy of a resource the organization file no longer has");
        }
    }
    let emulator = Emulator::start_on(emulator_listener, world, options.echo_mail).await?;
    let http = reqwest::Client::new();

    // Pub/Sub: the real emulator when PUBSUB_EMULATOR_HOST is set, else ours.
    let real_pubsub = std::env::var("PUBSUB_EMULATOR_HOST").ok().filter(|h| !h.is_empty());
    let push = Push { account: PUSH_ACCOUNT, audience: PUSH_AUDIENCE };
    let mut pairs = function_settings(&emulator, &scope, LOCAL_AUDIENCE, &url, &topic);
    pairs.extend(push.mailer_settings());
    pairs.extend([
        ("SENDGRID_API_KEY", "SG.local".to_string()),
        // The Cloud Run stand-in's invoker check verifies the push token's signature, the
        // mailer its claims.
        ("PUSH_AUTH", "cloud-run".to_string()),
        // The example organization's emergency path: the on-call group may break glass on
        // roles/logging.admin; admin@example.com is told and may reject it.
        (
            "APPROVAL_POLICY",
            r#"[{"roles": ["roles/logging.admin"], "breakGlass": {"maxDuration": 30, "reviewWithin": 240}}]"#
                .to_string(),
        ),
        ("ADMINISTRATORS", "user:admin@example.com".to_string()),
    ]);
    if let Some(host) = &real_pubsub {
        pairs.push(("PUBSUB_ENDPOINT", format!("http://{host}")));
    }
    for name in PASSED_THROUGH {
        if let Ok(value) = std::env::var(name) {
            pairs.push((name, value));
        }
    }
    pairs.extend(options.settings.iter().cloned());
    let mut env = Env::from_pairs(&pairs);
    let list_config = list_eligibility::Config::read(&mut env);
    let request_config = request_approval::Config::read(&mut env);
    let approve_config = approve::Config::read(&mut env);
    let mailer_config = mailer::Config::read(&mut env);
    let sweeper_config = sweeper::Config::read(&mut env);
    env.finish()?;
    // The Chat app checks Pub/Sub's and Google Chat's tokens itself, as deployed: Chat's
    // token (audience: the project number) cannot pass Cloud Run's invoker check.
    let chat_pairs = [("PUSH_AUTH", "verify"), ("PUSH_AUDIENCE", CHAT_PUSH_AUDIENCE), ("CHAT_AUDIENCE", CHAT_AUDIENCE)];
    let chat_pairs = [pairs.clone(), chat_pairs.map(|(name, value)| (name, value.to_string())).to_vec()].concat();
    let mut chat_env = Env::from_pairs(&chat_pairs);
    let chat_config = chat::Config::read(&mut chat_env);
    chat_env.finish()?;

    let serve = |built: Result<axum::Router, String>| async move {
        let router = built.map_err(anyhow::Error::msg)?;
        anyhow::Ok(common::runner::spawn_local(common::runner::app(router)).await?)
    };
    let list = serve(list_eligibility::AppState::build(list_config).await).await?;
    let request = serve(request_approval::AppState::build(request_config).await).await?;
    let approve = serve(approve::AppState::build(approve_config).await).await?;
    let mailer = serve(mailer::AppState::build(mailer_config).await).await?;
    let mailer = front_mailer(&emulator, mailer, push, real_pubsub.is_some()).await?;
    subscribe(&http, &emulator, real_pubsub.as_deref(), &topic, format!("http://{mailer}/"), "jit-mailer-local", push)
        .await?;
    let chat = serve(chat::AppState::build(chat_config).await).await?;
    start_chat(&http, &emulator, real_pubsub.as_deref(), &topic, chat).await?;

    if let Some(every) = options.sweep_every {
        tokio::spawn(sweep_every(sweeper_config, every));
    }
    let users: Vec<String> = emulator.state.world().users().iter().cloned().collect();
    let door = front_door::FrontDoor::new(
        front_door::Upstreams { list, request, approve },
        emulator.state.clone(),
        LOCAL_AUDIENCE,
        Arc::new(users.clone()),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(door_listener, door.router()).await {
            tracing::error!(%error, "front door stopped");
        }
    });
    Ok(Running { url, emulator, users })
}

/// The sweeper job, every `every`, as Cloud Scheduler runs it: what a crash or an outage left
/// half-done is completed, and what the ledger does not own is removed.
async fn sweep_every(config: sweeper::Config, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match sweeper::run(&config, common::timestamp::Timestamp::now()).await {
            Ok(summary) => tracing::info!(%summary, "sweep finished"),
            Err(error) => tracing::error!(%error, "sweep failed"),
        }
    }
}

impl Running {
    /// Writes the IAM policies to `dir`, for the next run's `--state`.
    pub fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let policies = self.emulator.state.world().policies();
        let path = dir.join(POLICIES_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&policies)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Puts Cloud Run's invoker check in front of the mailer, as Terraform deploys it (only the
/// push account may invoke it); for the real Pub/Sub emulator, which pushes unsigned, also
/// what Google's Pub/Sub adds: the push account's OIDC token. Returns where pushes go.
pub async fn front_mailer(
    emulator: &Emulator,
    mailer: SocketAddr,
    push: Push<'_>,
    unsigned_pushes: bool,
) -> anyhow::Result<SocketAddr> {
    let jwks = format!("{}/oauth2/v3/certs", emulator.url());
    let invoker = format!("serviceAccount:{}", push.account);
    let front = cloud_run::CloudRunFront::new(mailer, push.audience, &[&invoker], &jwks);
    let front = common::runner::spawn_local(front.router()).await?;
    if !unsigned_pushes {
        return Ok(front);
    }
    let signer = cloud_run::PubSubSigner::new(front, push.account, push.audience, emulator.state.clone());
    Ok(common::runner::spawn_local(signer.router()).await?)
}

/// The push subscription's OIDC identity: its service account and the token's audience.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    pub account: &'a str,
    pub audience: &'a str,
}

impl Push<'_> {
    /// The mailer's settings for pushes from this identity, as deployed: on Cloud Run
    /// (`K_SERVICE`), behind its invoker check.
    pub fn mailer_settings(self) -> [(&'static str, String); 4] {
        [
            ("SMTP_SENDER_ADDRESS", "jit-access@example.com".to_string()),
            ("PUSH_AUDIENCE", self.audience.to_string()),
            ("PUSH_SERVICE_ACCOUNT", self.account.to_string()),
            ("K_SERVICE", "jit-mailer".to_string()),
        ]
    }
}

/// The settings that point the functions at `emulator`, for the local run and the tests: its
/// endpoints, then the resource scope, the IAP audience, the base URL and the event topic.
pub fn function_settings(
    emulator: &Emulator,
    scope: &str,
    audience: &str,
    base_url: &str,
    topic: &str,
) -> Vec<(&'static str, String)> {
    let mut pairs = emulator.environment();
    pairs.extend([
        ("RESOURCE_SCOPE", scope.to_string()),
        ("IAP_AUDIENCE", audience.to_string()),
        ("BASE_URL", base_url.to_string()),
        ("NOTIFICATION_TOPIC", topic.to_string()),
    ]);
    pairs
}

/// Push subscription from the topic to `endpoint`, on whichever Pub/Sub is in use.
async fn subscribe(
    http: &reqwest::Client,
    emulator: &Emulator,
    real_pubsub: Option<&str>,
    topic: &str,
    endpoint: String,
    name: &str,
    push: Push<'_>,
) -> anyhow::Result<()> {
    let (base, push_config) = match real_pubsub {
        Some(host) => {
            let base = format!("http://{host}");
            // The real emulator starts empty; a topic that exists already is fine.
            let _ = http.put(format!("{base}/v1/{topic}")).json(&serde_json::json!({})).send().await?;
            (base, serde_json::json!({"pushEndpoint": endpoint}))
        }
        None => (
            emulator.url(),
            serde_json::json!({"pushEndpoint": endpoint,
                "oidcToken": {"serviceAccountEmail": push.account, "audience": push.audience}}),
        ),
    };
    let project = topic.split('/').nth(1).unwrap_or("jit-project");
    let subscription = format!("{base}/v1/projects/{project}/subscriptions/{name}");
    let response =
        http.put(subscription).json(&serde_json::json!({"topic": topic, "pushConfig": push_config})).send().await?;
    anyhow::ensure!(
        response.status().is_success() || response.status().as_u16() == 409,
        "creating the push subscription {name}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// The Chat app: subscribed to the topic (signed pushes, as Google's Pub/Sub sends them),
/// configured in the emulated Google Chat, and added by every person of the organization to
/// a direct message, so a newcomer sees cards at once on the emulator's Chat page.
async fn start_chat(
    http: &reqwest::Client,
    emulator: &Emulator,
    real_pubsub: Option<&str>,
    topic: &str,
    chat: SocketAddr,
) -> anyhow::Result<()> {
    let push = Push { account: PUSH_ACCOUNT, audience: CHAT_PUSH_AUDIENCE };
    let pushes = match real_pubsub {
        None => chat,
        Some(_) => {
            let signer = cloud_run::PubSubSigner::new(chat, push.account, push.audience, emulator.state.clone());
            common::runner::spawn_local(signer.router()).await?
        }
    };
    subscribe(http, emulator, real_pubsub, topic, format!("http://{pushes}/events"), "jit-chat-local", push).await?;
    let app = serde_json::json!({"url": format!("http://{chat}/"), "audience": CHAT_AUDIENCE});
    http.put(format!("{}/_emulator/chat/app", emulator.url())).json(&app).send().await?.error_for_status()?;
    let users: Vec<String> = emulator.state.world().users().iter().cloned().collect();
    for user in users {
        let added = serde_json::json!({"type": "ADDED_TO_SPACE", "email": user});
        let answer: serde_json::Value =
            http.post(format!("{}/_emulator/chat/events", emulator.url())).json(&added).send().await?.json().await?;
        anyhow::ensure!(answer["status"] == 200, "adding the Chat app for {user}: {answer}");
    }
    Ok(())
}
