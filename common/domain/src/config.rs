//! Configuration from environment variables, with the reference app's names where they exist.
//!
//! [`Env`] collects every problem instead of stopping at the first, so a bad deployment is
//! fixed in one round: start-up prints all of them and exits non-zero. Each function reads
//! the sections it needs; [`Env::finish`] also returns the names it read, which the
//! Terraform cross-check and the README's table are kept honest against.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::justification::JustificationPolicy;

/// Looks a variable up: the process environment, or a map in tests.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables through a lookup function, collecting problems.
pub struct Env<'a> {
    lookup: Lookup<'a>,
    problems: Vec<String>,
    read: BTreeSet<&'static str>,
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problems):", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").field("problems", &self.problems).finish_non_exhaustive()
    }
}

impl<'a> Env<'a> {
    pub fn from_process() -> Env<'static> {
        Env::new(|name| std::env::var(name).ok())
    }

    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> Env<'a> {
        Env { lookup: Box::new(lookup), problems: Vec::new(), read: BTreeSet::new() }
    }

    /// Settings given as name and value, as the local run and the tests give them: where a
    /// name is given twice, the later value wins.
    pub fn from_pairs(pairs: &'a [(&'static str, String)]) -> Env<'a> {
        Env::new(|name| pairs.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
    }

    /// Trimmed; an empty value counts as unset, as in the reference app.
    pub fn optional(&mut self, name: &'static str) -> Option<String> {
        self.read.insert(name);
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub fn text(&mut self, name: &'static str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_string())
    }

    /// Records a problem when unset; returns an empty string so reading can go on.
    pub fn required(&mut self, name: &'static str, what: &str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.problem(format!("{name} is required: {what}"));
            String::new()
        })
    }

    pub fn number(&mut self, name: &'static str, default: u64, range: RangeInclusive<u64>) -> u64 {
        let Some(text) = self.optional(name) else {
            return default;
        };
        match text.parse::<u64>() {
            Ok(value) if range.contains(&value) => value,
            _ => {
                self.problem(format!(
                    "{name} must be a whole number from {} to {}, not '{text}'",
                    range.start(),
                    range.end()
                ));
                default
            }
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        let Some(text) = self.optional(name) else {
            return default;
        };
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problem(format!("{name} must be true or false, not '{text}'"));
                default
            }
        }
    }

    pub fn seconds(&mut self, name: &'static str, default: u64, range: RangeInclusive<u64>) -> Duration {
        Duration::from_secs(self.number(name, default, range))
    }

    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// Every name read so far, whatever was found.
    pub fn names_read(&self) -> BTreeSet<&'static str> {
        self.read.clone()
    }

    /// The names read, or every problem found.
    pub fn finish(self) -> Result<BTreeSet<&'static str>, ConfigError> {
        if self.problems.is_empty() { Ok(self.read) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// Limits on activations and requests, shared by the functions that decide them.
#[derive(Debug, Clone)]
pub struct ActivationSettings {
    /// `ACTIVATION_TIMEOUT` (alias `ELEVATION_DURATION`): the longest activation, minutes.
    pub max_activation_minutes: u64,
    /// min(60, max), as in the reference app.
    pub default_activation_minutes: u64,
    /// `ACTIVATION_REQUEST_TIMEOUT`, capped at `ACTIVATION_TIMEOUT`: how long a peer-approval
    /// request may be approved, minutes.
    pub request_timeout_minutes: u64,
    pub min_reviewers: u64,
    pub max_reviewers: u64,
    pub max_roles: u64,
    /// `ACTIVATION_MAX_SCHEDULE`: how far ahead an activation may start, minutes (7 days).
    pub max_schedule_minutes: u64,
    pub justification: JustificationPolicy,
}

/// One week: longer looks like a unit mistake (seconds for minutes).
const MAX_MINUTES: u64 = 7 * 24 * 60;

impl ActivationSettings {
    pub fn read(env: &mut Env<'_>) -> ActivationSettings {
        let deprecated = env.optional("ELEVATION_DURATION");
        let max_activation_minutes = match env.optional("ACTIVATION_TIMEOUT") {
            Some(_) => env.number("ACTIVATION_TIMEOUT", 120, 1..=MAX_MINUTES),
            None if deprecated.is_some() => env.number("ELEVATION_DURATION", 120, 1..=MAX_MINUTES),
            None => 120,
        };
        // signJwt refuses tokens that expire more than 12 hours ahead.
        let request_timeout = env.number("ACTIVATION_REQUEST_TIMEOUT", 60, 1..=720);
        let min_reviewers = env.number("ACTIVATION_REQUEST_MIN_REVIEWERS", 1, 1..=100);
        let max_reviewers = env.number("ACTIVATION_REQUEST_MAX_REVIEWERS", 10, 1..=100);
        if min_reviewers > max_reviewers {
            env.problem(format!(
                "ACTIVATION_REQUEST_MIN_REVIEWERS ({min_reviewers}) must not exceed ACTIVATION_REQUEST_MAX_REVIEWERS ({max_reviewers})"
            ));
        }
        let max_roles = env.number("ACTIVATION_REQUEST_MAX_ROLES", 10, 1..=100);
        let max_schedule_minutes = env.number("ACTIVATION_MAX_SCHEDULE", 7 * 24 * 60, 0..=90 * 24 * 60);
        let pattern = env.text("JUSTIFICATION_PATTERN", ".*");
        let hint = env.text("JUSTIFICATION_HINT", "Bug or case number");
        let justification = JustificationPolicy::new(&pattern, &hint).unwrap_or_else(|e| {
            env.problem(e.to_string());
            JustificationPolicy::new(".*", &hint).expect("the fallback pattern is valid")
        });
        ActivationSettings {
            max_activation_minutes,
            default_activation_minutes: max_activation_minutes.min(60),
            request_timeout_minutes: request_timeout.min(max_activation_minutes),
            min_reviewers,
            max_reviewers,
            max_roles,
            max_schedule_minutes,
            justification,
        }
    }
}

/// Where eligibility is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSettings {
    /// `RESOURCE_SCOPE`: one or more (comma separated) of `organizations/ID`, `folders/ID`
    /// and `projects/ID`; never empty once read without problems.
    pub resource_scopes: Vec<String>,
    /// `AVAILABLE_PROJECTS_QUERY`: list projects with Resource Manager search instead.
    pub available_projects_query: Option<String>,
    /// `RESOURCE_CATALOG`: where eligibility comes from.
    pub catalog: CatalogKind,
    /// `RESOURCE_CACHE_TIMEOUT` (seconds): how long listings may reuse group memberships and
    /// project lists. Decisions that write IAM or approve never do.
    pub cache_timeout: Duration,
    /// `POLICY_CACHE_TIMEOUT` (seconds): how long listings may reuse a resource's effective
    /// policies. Short, since they hold the activations a person has just made; decisions that
    /// write IAM or approve never reuse them.
    pub policy_cache_timeout: Duration,
}

/// The two catalogs of eligibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// Effective policies from Cloud Asset, groups from Cloud Identity: no daily quota.
    AssetInventory,
    /// Policy Analyzer (`analyzeIamPolicy`): 20 queries a day without a paid Security
    /// Command Center tier.
    PolicyAnalyzer,
}

impl ScopeSettings {
    pub fn read(env: &mut Env<'_>) -> ScopeSettings {
        let project = env.optional("GOOGLE_CLOUD_PROJECT");
        let resource_scopes = match (env.optional("RESOURCE_SCOPE"), project) {
            (Some(scopes), _) => parse_scopes(&scopes).unwrap_or_else(|problem| {
                env.problem(problem);
                Vec::new()
            }),
            (None, Some(project)) => vec![format!("projects/{project}")],
            (None, None) => {
                env.problem(
                    "RESOURCE_SCOPE is required (organizations/ID, folders/ID or projects/ID) unless GOOGLE_CLOUD_PROJECT is set".into(),
                );
                Vec::new()
            }
        };
        let catalog = match env.text("RESOURCE_CATALOG", "AssetInventory").to_ascii_lowercase().as_str() {
            "assetinventory" => CatalogKind::AssetInventory,
            "policyanalyzer" => CatalogKind::PolicyAnalyzer,
            other => {
                env.problem(format!("RESOURCE_CATALOG must be AssetInventory or PolicyAnalyzer, not '{other}'"));
                CatalogKind::AssetInventory
            }
        };
        if catalog == CatalogKind::PolicyAnalyzer && resource_scopes.len() > 1 {
            // Every question would be asked once per scope, out of 20 queries a day.
            env.problem(
                "RESOURCE_CATALOG=PolicyAnalyzer takes one RESOURCE_SCOPE: use AssetInventory for several".into(),
            );
        }
        ScopeSettings {
            resource_scopes,
            available_projects_query: env.optional("AVAILABLE_PROJECTS_QUERY"),
            catalog,
            cache_timeout: env.seconds("RESOURCE_CACHE_TIMEOUT", 60, 0..=3600),
            policy_cache_timeout: env.seconds("POLICY_CACHE_TIMEOUT", 10, 0..=300),
        }
    }
}

impl ScopeSettings {
    /// The same scope with caching off: for decisions that write IAM or approve.
    pub fn fresh(&self) -> ScopeSettings {
        ScopeSettings { cache_timeout: Duration::ZERO, policy_cache_timeout: Duration::ZERO, ..self.clone() }
    }
}

/// `RESOURCE_SCOPE`'s comma-separated scopes, each valid and none twice.
fn parse_scopes(text: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in text.split(',').map(str::trim) {
        if !valid_scope(scope) {
            return Err(format!(
                "RESOURCE_SCOPE must be organizations/NUMBER, folders/NUMBER or projects/ID (several separated by commas), not '{scope}'"
            ));
        }
        if scopes.iter().any(|s| s == scope) {
            return Err(format!("RESOURCE_SCOPE names {scope} twice"));
        }
        scopes.push(scope.to_string());
    }
    Ok(scopes)
}

fn valid_scope(scope: &str) -> bool {
    match scope.split_once('/') {
        Some(("organizations" | "folders", number)) => !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()),
        Some(("projects", id)) => crate::entitlement::ProjectId::parse(id).is_ok(),
        _ => false,
    }
}

/// What one person's listings may cost in Google reads: a token bucket per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingBudgetSettings {
    /// `LISTING_BUDGET_BURST`: uncached Google reads a person may make at once.
    pub burst: u32,
    /// `LISTING_BUDGET_PER_MINUTE`: reads regained per minute, up to the burst.
    pub per_minute: u32,
}

impl ListingBudgetSettings {
    pub fn read(env: &mut Env<'_>) -> ListingBudgetSettings {
        ListingBudgetSettings {
            burst: env.number("LISTING_BUDGET_BURST", 10, 1..=1000) as u32,
            per_minute: env.number("LISTING_BUDGET_PER_MINUTE", 6, 1..=6000) as u32,
        }
    }
}

/// What IAP assertions must be addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IapSettings {
    pub audience: String,
}

impl IapSettings {
    /// `IAP_AUDIENCE` in full, or the reference app's `IAP_BACKEND_SERVICE_ID` with
    /// `PROJECT_NUMBER`. There is deliberately no way to turn the audience check off: without
    /// it, an assertion minted for any other IAP-protected app would be accepted here.
    pub fn read(env: &mut Env<'_>) -> IapSettings {
        let audience = match env.optional("IAP_AUDIENCE") {
            Some(audience) => audience,
            None => match (env.optional("IAP_BACKEND_SERVICE_ID"), env.optional("PROJECT_NUMBER")) {
                (Some(backend), Some(number)) => {
                    format!("/projects/{number}/global/backendServices/{backend}")
                }
                (Some(_), None) => {
                    env.problem("IAP_BACKEND_SERVICE_ID needs PROJECT_NUMBER to form the IAP audience".into());
                    String::new()
                }
                (None, _) => {
                    env.problem(
                        "IAP_AUDIENCE is required (/projects/NUMBER/global/backendServices/ID, /projects/NUMBER/apps/PROJECT_ID or /projects/NUMBER/locations/REGION/services/NAME), or IAP_BACKEND_SERVICE_ID with PROJECT_NUMBER".into(),
                    );
                    String::new()
                }
            },
        };
        if !audience.is_empty() && !audience.starts_with("/projects/") {
            env.problem(format!("IAP_AUDIENCE must start with /projects/, not '{audience}'"));
        }
        IapSettings { audience }
    }
}

/// The service account that signs activation tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `SIGNING_SERVICE_ACCOUNT`: issuer and audience of activation tokens.
    pub service_account: String,
}

impl TokenSettings {
    pub fn read(env: &mut Env<'_>) -> TokenSettings {
        let service_account =
            env.required("SIGNING_SERVICE_ACCOUNT", "the email of the service account that signs activation tokens");
        if !service_account.is_empty() && crate::email::Email::parse(&service_account).is_err() {
            env.problem(format!("SIGNING_SERVICE_ACCOUNT must be an email, not '{service_account}'"));
        }
        TokenSettings { service_account }
    }
}

/// Google API endpoints and timeouts. Every endpoint can be pointed elsewhere (the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    pub cloud_asset_endpoint: String,
    pub cloud_identity_endpoint: String,
    pub resource_manager_endpoint: String,
    pub iam_credentials_endpoint: String,
    pub pubsub_endpoint: String,
    /// With `{email}` standing for the signing service account.
    pub service_account_jwks_url: String,
    pub iap_jwks_url: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl BackendSettings {
    pub fn read(env: &mut Env<'_>) -> BackendSettings {
        let url = |env: &mut Env<'_>, name: &'static str, default: &str| {
            let value = env.text(name, default);
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                env.problem(format!("{name} must be an http(s) URL, not '{value}'"));
            }
            value
        };
        let pubsub_default = match env.optional("PUBSUB_EMULATOR_HOST") {
            Some(host) => format!("http://{host}"),
            None => "https://pubsub.googleapis.com".to_string(),
        };
        BackendSettings {
            cloud_asset_endpoint: url(env, "CLOUD_ASSET_ENDPOINT", "https://cloudasset.googleapis.com"),
            cloud_identity_endpoint: url(env, "CLOUD_IDENTITY_ENDPOINT", "https://cloudidentity.googleapis.com"),
            resource_manager_endpoint: url(
                env,
                "RESOURCE_MANAGER_ENDPOINT",
                "https://cloudresourcemanager.googleapis.com",
            ),
            iam_credentials_endpoint: url(env, "IAM_CREDENTIALS_ENDPOINT", "https://iamcredentials.googleapis.com"),
            pubsub_endpoint: url(env, "PUBSUB_ENDPOINT", &pubsub_default),
            service_account_jwks_url: url(
                env,
                "SERVICE_ACCOUNT_JWKS_URL",
                "https://www.googleapis.com/service_accounts/v1/metadata/jwk/{email}",
            ),
            iap_jwks_url: url(env, "IAP_JWKS_URL", "https://www.gstatic.com/iap/verify/public_key-jwk"),
            connect_timeout: env.seconds("BACKEND_CONNECT_TIMEOUT", 5, 1..=300),
            read_timeout: env.seconds("BACKEND_READ_TIMEOUT", 20, 1..=300),
            write_timeout: env.seconds("BACKEND_WRITE_TIMEOUT", 5, 1..=300),
        }
    }
}

/// How many approvals a request needs, and who may revoke any grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// `APPROVAL_POLICY`: rules by role and resource; one approval when none matches.
    pub policy: crate::approval_policy::ApprovalPolicy,
    /// `ADMINISTRATORS`: `user:EMAIL` and `group:EMAIL`, comma separated: may revoke any grant
    /// and see any request.
    pub administrators: Vec<String>,
    /// `BREAK_GLASS_LIMIT`: how many emergency grants one person may take in a period.
    pub break_glass_limit: BreakGlassLimit,
}

/// `ADMINISTRATORS`: `user:EMAIL` and `group:EMAIL`, comma separated, lowercase.
pub fn administrators(env: &mut Env<'_>) -> Vec<String> {
    let mut administrators = Vec::new();
    for member in env.text("ADMINISTRATORS", "").split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let valid = member
            .split_once(':')
            .filter(|(kind, _)| matches!(*kind, "user" | "group"))
            .is_some_and(|(_, email)| crate::email::Email::parse(email).is_ok());
        if valid {
            administrators.push(member.to_lowercase());
        } else {
            env.problem(format!("ADMINISTRATORS holds user:EMAIL or group:EMAIL, not '{member}'"));
        }
    }
    administrators
}

/// At most `count` emergency grants per person in any `period_seconds`: `COUNT/PERIOD`, the
/// period in days, hours or minutes (`3/7d`, the default; `1/12h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlassLimit {
    pub count: u32,
    pub period_seconds: i64,
}

impl BreakGlassLimit {
    pub const DEFAULT: BreakGlassLimit = BreakGlassLimit { count: 3, period_seconds: 7 * 86_400 };

    pub fn parse(text: &str) -> Option<BreakGlassLimit> {
        let (count, period) = text.split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|c| (1..=100).contains(c))?;
        let period = period.trim();
        let unit = match period.chars().last()? {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            _ => return None,
        };
        let amount: i64 = period[..period.len() - 1].parse().ok().filter(|a| *a >= 1)?;
        let period_seconds = amount.checked_mul(unit).filter(|s| *s <= 366 * 86_400)?;
        Some(BreakGlassLimit { count, period_seconds })
    }
}

impl ApprovalSettings {
    pub fn read(env: &mut Env<'_>) -> ApprovalSettings {
        let policy = match crate::approval_policy::ApprovalPolicy::parse(&env.text("APPROVAL_POLICY", "")) {
            Ok(policy) => policy,
            Err(problems) => {
                for problem in problems {
                    env.problem(problem);
                }
                crate::approval_policy::ApprovalPolicy::default()
            }
        };
        let administrators = administrators(env);
        let break_glass_limit = match env.optional("BREAK_GLASS_LIMIT") {
            None => BreakGlassLimit::DEFAULT,
            Some(text) => BreakGlassLimit::parse(&text).unwrap_or_else(|| {
                env.problem(format!(
                    "BREAK_GLASS_LIMIT is COUNT/PERIOD, 1 to 100 emergency grants per period of days, hours or minutes up to a year (3/7d, 1/12h), not '{text}'"
                ));
                BreakGlassLimit::DEFAULT
            }),
        };
        ApprovalSettings { policy, administrators, break_glass_limit }
    }
}

/// Where the request ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// `FIRESTORE_ENDPOINT` (or `http://$FIRESTORE_EMULATOR_HOST`).
    pub endpoint: String,
    /// `FIRESTORE_DATABASE`: `projects/P/databases/D`; default `(default)` in
    /// `GOOGLE_CLOUD_PROJECT`.
    pub database: String,
    /// `LEDGER_RETENTION_DAYS`: how long a request is kept after it closes (TTL), default 400.
    pub retention_days: u32,
}

impl LedgerSettings {
    pub fn read(env: &mut Env<'_>) -> LedgerSettings {
        let endpoint_default = match env.optional("FIRESTORE_EMULATOR_HOST") {
            Some(host) => format!("http://{host}"),
            None => "https://firestore.googleapis.com".to_string(),
        };
        let endpoint = env.text("FIRESTORE_ENDPOINT", &endpoint_default);
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            env.problem(format!("FIRESTORE_ENDPOINT must be an http(s) URL, not '{endpoint}'"));
        }
        let project = env.optional("GOOGLE_CLOUD_PROJECT");
        let database = match (env.optional("FIRESTORE_DATABASE"), project) {
            (Some(database), _) => database,
            (None, Some(project)) => format!("projects/{project}/databases/(default)"),
            (None, None) => {
                env.problem(
                    "FIRESTORE_DATABASE (projects/P/databases/D) is required unless GOOGLE_CLOUD_PROJECT is set".into(),
                );
                String::new()
            }
        };
        let well_formed = database.split('/').collect::<Vec<_>>().as_slice().len() == 4
            && database.starts_with("projects/")
            && database.contains("/databases/");
        if !database.is_empty() && !well_formed {
            env.problem(format!("FIRESTORE_DATABASE must be projects/P/databases/D, not '{database}'"));
        }
        LedgerSettings { endpoint, database, retention_days: env.number("LEDGER_RETENTION_DAYS", 400, 1..=3650) as u32 }
    }
}

/// Where events go and what links point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    /// `NOTIFICATION_TOPIC` as `projects/P/topics/T`; a bare name is taken to be in
    /// `GOOGLE_CLOUD_PROJECT`. Unset: no events are published.
    pub topic: Option<String>,
    /// `BASE_URL`: the address users open, for links in events and mail.
    pub base_url: String,
}

impl NotificationSettings {
    pub fn read(env: &mut Env<'_>) -> NotificationSettings {
        let topic = match env.optional("NOTIFICATION_TOPIC") {
            None => None,
            Some(topic) if topic.starts_with("projects/") => Some(topic),
            Some(name) => match env.optional("GOOGLE_CLOUD_PROJECT") {
                Some(project) => Some(format!("projects/{project}/topics/{name}")),
                None => {
                    env.problem(format!(
                        "NOTIFICATION_TOPIC '{name}' is a bare name: set GOOGLE_CLOUD_PROJECT or give projects/P/topics/{name}"
                    ));
                    None
                }
            },
        };
        let base_url = env.required("BASE_URL", "the https address users open, for links in mail");
        let looks_like_url = base_url.starts_with("https://") || base_url.starts_with("http://");
        if !base_url.is_empty() && !looks_like_url {
            env.problem(format!("BASE_URL must be an http(s) URL, not '{base_url}'"));
        }
        NotificationSettings { topic, base_url: base_url.trim_end_matches('/').to_string() }
    }
}

/// Every section, as the HTTP functions and the local run use them.
#[derive(Debug, Clone)]
pub struct Config {
    pub activation: ActivationSettings,
    pub approval: ApprovalSettings,
    pub scope: ScopeSettings,
    pub iap: IapSettings,
    pub token: TokenSettings,
    pub backend: BackendSettings,
    pub ledger: LedgerSettings,
    pub notification: NotificationSettings,
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config::read_with(env, IapSettings::read)
    }

    /// Every section but IAP's: for what no person reaches through IAP (the Chat app, the
    /// sweeper), which still decide on requests as the HTTP functions do.
    pub fn read_without_iap(env: &mut Env<'_>) -> Config {
        Config::read_with(env, |_| IapSettings { audience: String::new() })
    }

    /// Every section, in this order, IAP's from `iap`.
    fn read_with(env: &mut Env<'_>, iap: impl FnOnce(&mut Env<'_>) -> IapSettings) -> Config {
        Config {
            activation: ActivationSettings::read(env),
            approval: ApprovalSettings::read(env),
            scope: ScopeSettings::read(env),
            iap: iap(env),
            token: TokenSettings::read(env),
            backend: BackendSettings::read(env),
            ledger: LedgerSettings::read(env),
            notification: NotificationSettings::read(env),
        }
    }
}

/// Reads a function's settings from the process environment with `read` (its `Config::read`):
/// the settings, or every problem found. The one way every function and job starts.
pub fn from_process_env<C>(read: impl FnOnce(&mut Env<'_>) -> C) -> Result<C, ConfigError> {
    let mut env = Env::from_process();
    let config = read(&mut env);
    env.finish().map(|_| config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("RESOURCE_SCOPE", "organizations/123"),
        ("FIRESTORE_DATABASE", "projects/p/databases/(default)"),
        ("IAP_AUDIENCE", "/projects/1/global/backendServices/2"),
        ("SIGNING_SERVICE_ACCOUNT", "jit@p.iam.gserviceaccount.com"),
        ("BASE_URL", "https://jit.example.com/"),
    ];

    fn read(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = env_of(pairs);
        let mut env = Env::new(|name| vars.get(name).cloned());
        let config = Config::read(&mut env);
        env.finish().map(|_| config)
    }

    #[test]
    fn defaults_match_the_reference_app() {
        let config = read(MINIMAL).expect("valid");
        let activation = &config.activation;
        assert_eq!(activation.max_activation_minutes, 120);
        assert_eq!(activation.default_activation_minutes, 60);
        assert_eq!(activation.request_timeout_minutes, 60);
        assert_eq!((activation.min_reviewers, activation.max_reviewers), (1, 10));
        assert_eq!(activation.max_roles, 10);
        assert_eq!(activation.justification.pattern(), ".*");
        assert_eq!(activation.justification.hint(), "Bug or case number");
        assert_eq!(config.scope.available_projects_query, None);
        assert_eq!(config.notification.topic, None);
        assert_eq!(config.notification.base_url, "https://jit.example.com");
        assert_eq!(config.backend.read_timeout, Duration::from_secs(20));
        assert_eq!(config.backend.iap_jwks_url, "https://www.gstatic.com/iap/verify/public_key-jwk");
        assert_eq!(config.backend.pubsub_endpoint, "https://pubsub.googleapis.com");
    }

    #[test]
    fn listings_reuse_policies_briefly_within_a_budget_and_decisions_never_reuse() {
        let config = read(MINIMAL).expect("valid");
        assert_eq!(config.scope.cache_timeout, Duration::from_secs(60));
        assert_eq!(config.scope.policy_cache_timeout, Duration::from_secs(10));
        let fresh = config.scope.fresh();
        assert_eq!((fresh.cache_timeout, fresh.policy_cache_timeout), (Duration::ZERO, Duration::ZERO));
        let vars = env_of(MINIMAL);
        let mut env = Env::new(|name| vars.get(name).cloned());
        assert_eq!(ListingBudgetSettings::read(&mut env), ListingBudgetSettings { burst: 10, per_minute: 6 });
        let vars = env_of(&[
            ("LISTING_BUDGET_BURST", "0"),
            ("LISTING_BUDGET_PER_MINUTE", "x"),
            ("POLICY_CACHE_TIMEOUT", "301"),
        ]);
        let mut env = Env::new(|name| vars.get(name).cloned());
        let _ = (ListingBudgetSettings::read(&mut env), ScopeSettings::read(&mut env));
        let text = env.finish().expect_err("invalid").to_string();
        for name in ["LISTING_BUDGET_BURST", "LISTING_BUDGET_PER_MINUTE", "POLICY_CACHE_TIMEOUT"] {
            assert!(text.contains(name), "{name} not reported: {text}");
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let error = read(&[
            ("ACTIVATION_TIMEOUT", "ten"),
            ("ACTIVATION_REQUEST_MIN_REVIEWERS", "5"),
            ("ACTIVATION_REQUEST_MAX_REVIEWERS", "2"),
            ("JUSTIFICATION_PATTERN", "(unclosed"),
            ("RESOURCE_SCOPE", "folder/1"),
            ("CLOUD_ASSET_ENDPOINT", "localhost:1"),
        ])
        .expect_err("invalid");
        let text = error.to_string();
        for needle in [
            "ACTIVATION_TIMEOUT",
            "ACTIVATION_REQUEST_MIN_REVIEWERS (5)",
            "JUSTIFICATION_PATTERN",
            "RESOURCE_SCOPE must be",
            "IAP_AUDIENCE is required",
            "SIGNING_SERVICE_ACCOUNT is required",
            "BASE_URL is required",
            "CLOUD_ASSET_ENDPOINT must be",
            "FIRESTORE_DATABASE",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(error.problems.len(), 9, "{text}");
    }

    #[test]
    fn request_timeout_is_capped_by_activation_timeout() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([("ACTIVATION_TIMEOUT", "30"), ("ACTIVATION_REQUEST_TIMEOUT", "90")]);
        let config = read(&pairs).expect("valid");
        assert_eq!(config.activation.request_timeout_minutes, 30);
        assert_eq!(config.activation.default_activation_minutes, 30);
    }

    #[test]
    fn several_scopes_are_comma_separated_each_valid_and_none_twice() {
        let with = |scope: &str, catalog: &str| {
            let mut pairs = MINIMAL.to_vec();
            pairs.extend([("RESOURCE_SCOPE", scope), ("RESOURCE_CATALOG", catalog)]);
            read(&pairs)
        };
        let config = with("organizations/1, folders/2,projects/p-1", "AssetInventory").expect("valid");
        assert_eq!(config.scope.resource_scopes, ["organizations/1", "folders/2", "projects/p-1"]);
        for (scope, problem) in [
            ("folders/2,", "not ''"),
            ("folders/2,,projects/p", "not ''"),
            ("folders/2 folders/3", "not 'folders/2 folders/3'"),
            ("folders/2, folders/2", "names folders/2 twice"),
        ] {
            let error = with(scope, "AssetInventory").expect_err(scope);
            assert!(error.to_string().contains(problem), "{scope}: {error}");
        }
        let error = with("folders/2,folders/3", "PolicyAnalyzer").expect_err("one scope");
        assert!(error.to_string().contains("PolicyAnalyzer takes one RESOURCE_SCOPE"), "{error}");
        assert!(with("folders/2", "PolicyAnalyzer").is_ok());
    }

    #[test]
    fn deprecated_and_composed_names_still_work() {
        let pairs = [
            ("GOOGLE_CLOUD_PROJECT", "jit-project"),
            ("ELEVATION_DURATION", "45"),
            ("IAP_BACKEND_SERVICE_ID", "456"),
            ("PROJECT_NUMBER", "123"),
            ("SIGNING_SERVICE_ACCOUNT", "jit@jit-project.iam.gserviceaccount.com"),
            ("BASE_URL", "https://jit.example.com"),
            ("NOTIFICATION_TOPIC", "jit-events"),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
        ];
        let config = read(&pairs).expect("valid");
        assert_eq!(config.activation.max_activation_minutes, 45);
        assert_eq!(config.scope.resource_scopes, ["projects/jit-project"]);
        assert_eq!(config.iap.audience, "/projects/123/global/backendServices/456");
        assert_eq!(config.notification.topic.as_deref(), Some("projects/jit-project/topics/jit-events"));
        assert_eq!(config.backend.pubsub_endpoint, "http://127.0.0.1:8085");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend([("ACTIVATION_TIMEOUT", "  "), ("JUSTIFICATION_HINT", "")]);
        let config = read(&pairs).expect("valid");
        assert_eq!(config.activation.max_activation_minutes, 120);
        assert_eq!(config.activation.justification.hint(), "Bug or case number");
    }

    #[test]
    fn finish_lists_the_names_read() {
        let vars = env_of(MINIMAL);
        let mut env = Env::new(|name| vars.get(name).cloned());
        let _ = Config::read(&mut env);
        let names = env.finish().expect("valid");
        for name in
            ["RESOURCE_SCOPE", "ACTIVATION_TIMEOUT", "IAP_AUDIENCE", "BACKEND_READ_TIMEOUT", "NOTIFICATION_TOPIC"]
        {
            assert!(names.contains(name), "{name} not listed");
        }
    }
}
