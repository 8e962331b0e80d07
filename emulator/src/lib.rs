//! An emulator of the Google APIs this system calls, plus IAP and SendGrid, served over HTTP
//! on 127.0.0.1 in their real wire format, so that tests and the local run drive the
//! production SDK clients unchanged. It never ships: deployed binaries do not depend on it.
//!
//! Served:
//! - Cloud Asset `GET /v1/{scope}:analyzeIamPolicy` ([`analysis`]), with the free tier's daily
//!   limit when the organization has one; `…/effectiveIamPolicies:batchGet`,
//!   `:searchAllIamPolicies` and `:searchAllResources` ([`assets`]);
//! - Cloud Identity `groups:lookup`, `memberships`, `:searchDirectGroups` and the transitive
//!   searches, refused (403) for an edition without them ([`identity`]);
//! - Resource Manager `POST /v3|v1/{resource}:getIamPolicy|setIamPolicy` with etags, and
//!   `GET /v3/projects:search`;
//! - IAM Credentials `POST /v1/projects/-/serviceAccounts/EMAIL:signJwt`, and that account's
//!   keys at `GET /service_accounts/v1/metadata/jwk/EMAIL`;
//! - IAP's keys at `GET /iap/verify/public_key-jwk`, and `POST /_emulator/iap/assertion`;
//! - SendGrid `POST /v3/mail/send`, captured;
//! - Secret Manager `GET /v1/projects/P/secrets/S/versions/V:access`;
//! - Google's OIDC keys at `GET /oauth2/v3/certs`, and `POST /_emulator/oidc/token`, the
//!   tokens authenticated pushes carry;
//! - Firestore's document `GET`, `:commit` with preconditions and `:runQuery` ([`firestore`]);
//! - Pub/Sub gRPC `Publish`, REST publish, topic and push-subscription creation ([`pubsub`]);
//! - test controls: `GET /_emulator/mail`, `/pubsub`, `/calls`, `/audit`, `/users`,
//!   `/analysis` (the Policy Analyzer queries received); `POST /_emulator/faults` to make the
//!   next calls fail or slow down, `POST /_emulator/clock` to move the emulator's clock on.
//!
//! It answers only requests addressed to the loopback (`Host: 127.0.0.1`, `localhost`,
//! `[::1]`), so that a web page cannot reach it through DNS rebinding ([`loopback`]).

pub mod analysis;
pub mod assets;
pub mod chat;
pub mod firestore;
pub mod google;
pub mod identity;
pub mod loopback;
pub mod paging;
pub mod publisher;
pub mod pubsub;
pub mod routes;
pub mod state;
pub mod world;

use std::net::SocketAddr;
use std::sync::Arc;

pub use state::{Fault, State};
pub use world::{World, WorldFile};

/// A running emulator.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub address: SocketAddr,
    pub state: Arc<State>,
}

/// The documented example organization, also the local run's default.
pub const DEFAULT_WORLD: &str = include_str!("../organization.yaml");

impl Emulator {
    /// Starts on 127.0.0.1 with a free port, in the background of the current runtime.
    pub async fn start(world: World) -> anyhow::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        Emulator::start_on(listener, world, false).await
    }

    /// Starts on a listener the caller bound; `echo_mail` prints captured mail.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        world: World,
        echo_mail: bool,
    ) -> anyhow::Result<Emulator> {
        let address = listener.local_addr()?;
        let state = Arc::new(State::new(world, echo_mail)?);
        let app = routes::router(state.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "emulator stopped");
            }
        });
        Ok(Emulator { address, state })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Environment variables that point the functions at this emulator.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let url = self.url();
        let service_account = self.state.world().service_account.clone();
        vec![
            ("CLOUD_ASSET_ENDPOINT", url.clone()),
            ("CLOUD_IDENTITY_ENDPOINT", url.clone()),
            ("RESOURCE_MANAGER_ENDPOINT", url.clone()),
            ("IAM_CREDENTIALS_ENDPOINT", url.clone()),
            ("PUBSUB_ENDPOINT", url.clone()),
            ("SERVICE_ACCOUNT_JWKS_URL", format!("{url}/service_accounts/v1/metadata/jwk/{{email}}")),
            ("IAP_JWKS_URL", format!("{url}/iap/verify/public_key-jwk")),
            ("SIGNING_SERVICE_ACCOUNT", service_account),
            ("SENDGRID_BASE_URL", url.clone()),
            ("SECRET_MANAGER_ENDPOINT", url.clone()),
            ("PUSH_JWKS_URL", format!("{url}/oauth2/v3/certs")),
            ("FIRESTORE_ENDPOINT", url.clone()),
            ("CHAT_ENDPOINT", url.clone()),
            ("FIRESTORE_DATABASE", "projects/jit-project/databases/(default)".to_string()),
        ]
    }
}
