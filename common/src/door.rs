//! The one door to a request. Every function that reads or changes a request comes through
//! here, and each thing it can do takes one path:
//!
//! 1. **Read and verify** ([`LedgerReader`]): a record is only ever handled as a
//!    [`Verified`], checked against its signed activation token (peer approval) or its form
//!    (self-activation). The token's expiry bounds approving the original request only, never
//!    reading, revoking or ending it.
//! 2. **Decide**: the pure `lifecycle::decide`, fed with what the catalog says afresh; a
//!    refusal that no catalog answer could lift is answered before any backend call.
//! 3. **Record** the decision, deciding again on the record as written if another writer won.
//! 4. **Carry out** what the new state asks of IAM ([`lifecycle::next_step`]): check, write or
//!    remove the request's own bindings, then record the outcome; a write that lost a race
//!    to a revocation undoes itself. Google's final refusals end the request as failed.
//! 5. **Tell**: each recorded entry is published after it is recorded.
//!
//! Whoever touches a request next (a repeated action, a reader, the sweeper) runs step 4
//! again, so a crash or an outage between the steps leaves nothing half-done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::activation::{Activation, ActivationBinding, ActivationWindow, Approval, read_activation_binding};
use crate::condition::ActivationType;
use crate::config::{BackendSettings, Config, LedgerSettings, TokenSettings};
use crate::email::Email;
use crate::entitlement::{EntitlementId, ResourceId};
use crate::event;
use crate::gcp::GcpError;
use crate::gcp::catalog::AnyCatalog;
use crate::gcp::events::{EventPublisher, publish_or_log, publisher_for};
use crate::gcp::iam::IamWriter;
use crate::gcp::jwks::{JwksCache, Unverified};
use crate::gcp::ledger::{Ledger, Stored};
use crate::http::ApiError;
use crate::http::wire::RequestJson;
use crate::justification::JustificationPolicy;
use crate::lifecycle::{self, Entry, Record, Review, State, Step, Want};
use crate::policy::{GrantKey, Policy};
use crate::rules::{self, Action, Decision, Fresh, Standing, available_actions, decide};
use crate::timestamp::Timestamp;
use crate::token::{ActivationRequest, TokenError, TokenSigner, from_url_form, to_url_form, verify_stored_token};

/// How many steps one attempt to carry a request out may take before it gives up (a request
/// that keeps changing under it); the next touch goes on.
const MAX_STEPS: usize = 16;

/// How many open requests of a person one query reads.
const OPEN_LISTED: u32 = 50;

/// Reads the ledger and verifies what it reads.
#[derive(Debug, Clone)]
pub struct LedgerReader {
    ledger: Ledger,
    keys: Arc<JwksCache>,
    service_account: String,
}

/// A request as the ledger holds it, checked: a peer-approval record against its signed
/// token, a self-activation against its form. Only a [`LedgerReader`] makes one.
#[derive(Debug, Clone)]
pub struct Verified {
    stored: Stored,
    request: Option<ActivationRequest>,
    /// An event of this operation could not be published (logged): the caller says so.
    untold: bool,
}

impl Verified {
    pub fn record(&self) -> &Record {
        &self.stored.record
    }

    /// The signed request, for peer approval.
    pub fn request(&self) -> Option<&ActivationRequest> {
        self.request.as_ref()
    }

    /// The same request at a newer version of its record. The request's content (everything
    /// but the timeline) must be the one verified: a document changed behind our back is not.
    fn at(&self, stored: Stored) -> Result<Verified, ApiError> {
        if !same_request(&stored.record, &self.stored.record) {
            return Err(forged(&stored.record.id));
        }
        Ok(Verified { stored, request: self.request.clone(), untold: self.untold })
    }

    /// Whether an event of this operation could not be published.
    pub fn untold(&self) -> bool {
        self.untold
    }
}

/// Everything but the timeline.
fn same_request(a: &Record, b: &Record) -> bool {
    Record { timeline: Vec::new(), ..a.clone() } == Record { timeline: Vec::new(), ..b.clone() }
}

fn forged(id: &str) -> ApiError {
    tracing::warn!(activation_id = %id, "ledger record failed verification: it does not match its signed token or form; it is not acted upon");
    ApiError::forbidden("record_invalid", "the request in the ledger does not match its signed request")
}

impl LedgerReader {
    pub fn new(
        backend: &BackendSettings,
        ledger: &LedgerSettings,
        token: &TokenSettings,
    ) -> Result<LedgerReader, GcpError> {
        let http = JwksCache::http_client(backend);
        let keys = JwksCache::service_account(http.clone(), backend, &token.service_account);
        let ledger = Ledger::new(http, &ledger.endpoint, &ledger.database, ledger.retention_days)?;
        Ok(LedgerReader { ledger, keys: Arc::new(keys), service_account: token.service_account.clone() })
    }

    /// The request `id`, verified; `None` when there is none.
    pub async fn get(&self, id: &str) -> Result<Option<Verified>, ApiError> {
        match self.ledger.get(id).await? {
            Some(stored) => Ok(Some(self.verify(stored).await?)),
            None => Ok(None),
        }
    }

    async fn load(&self, id: &str) -> Result<Verified, ApiError> {
        self.get(id).await?.ok_or_else(|| ApiError::request_not_found(id))
    }

    /// Checks a record read from the ledger.
    pub async fn verify(&self, stored: Stored) -> Result<Verified, ApiError> {
        let record = &stored.record;
        match (record.activation_type, &record.token) {
            (ActivationType::Mpa, Some(token)) if record.id.starts_with("mpa-") => {
                let request =
                    self.verify_token(token).await.map_err(|error| error.map_refused(|_| forged(&record.id)))?;
                if request.id != record.id || !matches_token(record, &request) {
                    return Err(forged(&record.id));
                }
                Ok(Verified { stored, request: Some(request), untold: false })
            }
            (ActivationType::Jit, None)
                if record.id.starts_with("jit-") && record.approvals_needed == 0 && record.reviewers.is_empty() =>
            {
                Ok(Verified { stored, request: None, untold: false })
            }
            _ => Err(forged(&record.id)),
        }
    }

    /// A token's signature and request, at any time (its expiry is the caller's to weigh).
    async fn verify_token(&self, token: &str) -> Result<ActivationRequest, Unverified<TokenError>> {
        let account = &self.service_account;
        self.keys
            .verify(
                |keys| verify_stored_token(token, keys, account),
                |error| matches!(error, TokenError::Jwt(crate::jwt::JwtError::UnknownKeyId(_))),
            )
            .await
    }

    /// Verified records of a query; one that fails verification is left out (and logged).
    async fn verified(&self, stored: Vec<Stored>) -> Result<Vec<Verified>, ApiError> {
        let mut verified = Vec::with_capacity(stored.len());
        for stored in stored {
            match self.verify(stored).await {
                Ok(record) => verified.push(record),
                Err(error) if error.status().is_client_error() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(verified)
    }

    /// Requests `beneficiary` made, newest first.
    pub async fn made_by(&self, beneficiary: &Email, limit: u32) -> Result<Vec<Verified>, ApiError> {
        let stored = self.ledger.made_by(beneficiary, limit).await?;
        self.verified(stored).await
    }

    /// Requests that name `reviewer`, newest first.
    pub async fn naming_reviewer(&self, reviewer: &Email, limit: u32) -> Result<Vec<Verified>, ApiError> {
        let stored = self.ledger.naming_reviewer(reviewer, limit).await?;
        self.verified(stored).await
    }

    /// One page of open requests after `after` (document order), each verified or refused.
    pub async fn open_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Result<Verified, ApiError>)>, ApiError> {
        let mut page = Vec::new();
        for stored in self.ledger.open_page(after, limit).await? {
            let id = stored.record.id.clone();
            page.push((id, self.verify(stored).await));
        }
        Ok(page)
    }

    /// Writes a closed request again, so that it is no longer listed as open.
    pub async fn close(&self, verified: &Verified) -> Result<(), ApiError> {
        self.ledger.update(verified.record(), &verified.stored.update_time).await?;
        Ok(())
    }
}

/// Whether a record says exactly what its verified token says: the record the token makes,
/// but for the timeline.
fn matches_token(record: &Record, request: &ActivationRequest) -> bool {
    let token = record.token.as_deref().unwrap_or_default();
    same_request(record, &Record::from_request(request, token, Timestamp::UNIX_EPOCH)) && record.approvals_needed >= 1
}

/// What an action reads afresh before it is decided.
#[derive(Debug, Clone)]
struct Reads {
    fresh: Option<Fresh>,
    policy: Option<Policy>,
}

/// What an action or a view answers: the request as it stands now, what the caller may do
/// next, and a note for them.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verified: Verified,
    pub actions: Vec<&'static str>,
    pub message: Option<String>,
}

impl Outcome {
    pub fn record(&self) -> &Record {
        self.verified.record()
    }

    /// The request as the API shows it.
    pub fn json(&self) -> RequestJson {
        RequestJson::new(self.record(), Timestamp::now(), self.actions.clone()).with_message(self.message.clone())
    }
}

/// A self-activation, its inputs checked by `rules`.
#[derive(Debug, Clone)]
pub struct SelfActivation {
    pub id: String,
    pub entitlements: Vec<EntitlementId>,
    pub justification: String,
    pub window: ActivationWindow,
    /// Starts now (not scheduled): it may supersede the grants it repeats.
    pub starts_now: bool,
}

/// Emergency access, its inputs checked by `rules`: starts now, for `minutes`.
#[derive(Debug, Clone)]
pub struct BreakGlassAsk {
    pub id: String,
    pub entitlement: EntitlementId,
    pub justification: String,
    pub minutes: u64,
}

/// A peer-approval request, its inputs checked by `rules`.
#[derive(Debug, Clone)]
pub struct PeerRequest {
    pub id: String,
    pub entitlement: EntitlementId,
    pub justification: String,
    pub reviewers: Vec<Email>,
    /// How long, and from when (now if `None`): `rules::asked_window` within the role's limit.
    pub minutes: u64,
    pub start: Option<Timestamp>,
}

/// The door itself: the ledger, IAM, the catalog and the topic, and the settings the
/// decisions need.
#[derive(Debug, Clone)]
pub struct Door {
    reader: LedgerReader,
    writer: IamWriter,
    catalog: AnyCatalog,
    publisher: Arc<dyn EventPublisher>,
    signer: Option<Arc<dyn TokenSigner>>,
    config: Arc<Config>,
    /// Requests seen lately, by ID: their content, to read what an action needs side by side
    /// with the ledger. Never a decision: the record read afresh must match it.
    known: Arc<crate::gcp::catalog::Cache<Record>>,
}

impl Door {
    /// Everything the door needs, from the settings. Its catalog reads afresh: every decision
    /// here writes IAM or approves. `signer` only where requests are made.
    pub async fn new(config: Arc<Config>, signer: Option<Arc<dyn TokenSigner>>) -> Result<Door, GcpError> {
        let catalog = AnyCatalog::new(&config.backend, &config.scope.fresh()).await?;
        Ok(Door {
            reader: LedgerReader::new(&config.backend, &config.ledger, &config.token)?,
            writer: IamWriter::new(&config.backend).await?,
            catalog,
            publisher: publisher_for(&config.backend, &config.notification).await?,
            signer,
            config,
            known: Arc::new(crate::gcp::catalog::Cache::with_capacity(std::time::Duration::from_secs(3600), 1024)),
        })
    }

    pub fn reader(&self) -> &LedgerReader {
        &self.reader
    }

    pub fn writer(&self) -> &IamWriter {
        &self.writer
    }

    pub fn base_url(&self) -> &str {
        &self.config.notification.base_url
    }

    /// `ADMINISTRATORS`: `user:EMAIL` and `group:EMAIL`.
    pub fn administrators(&self) -> &[String] {
        &self.config.approval.administrators
    }

    /// The request as `caller` may see it (a party or an administrator), with what a crash
    /// left half-done finished first.
    pub async fn view(&self, caller: &Email, id: &str) -> Result<Outcome, ApiError> {
        let verified = self.reader.load(id).await?;
        self.remember(&verified);
        self.view_of(caller, verified).await
    }

    async fn view_of(&self, caller: &Email, verified: Verified) -> Result<Outcome, ApiError> {
        let admin = self.administrator(caller).await?;
        if !verified.record().is_party(caller) && !admin {
            return Err(rules::Refusal::NotInvolved.into());
        }
        let verified = self.settle_quietly(verified).await;
        // Buttons only: every action is checked again, afresh, when taken.
        let standing = Standing {
            may_review: verified.record().reviewers.contains(caller),
            administrator: admin,
            beneficiary_eligible: true,
        };
        Ok(self.outcome(verified, caller, standing, None))
    }

    /// The request a mailed link names, as `caller` sees it; its record is made from the
    /// token if the ledger has none (a request made before the ledger).
    pub async fn view_token(&self, caller: &Email, token: &str) -> Result<(ActivationRequest, Outcome), ApiError> {
        let (request, verified) = self.of_token(token, false).await?;
        if &request.beneficiary != caller && !request.reviewers.contains(caller) {
            return Err(rules::Refusal::NotInvolved.into());
        }
        Ok((request, self.view_of(caller, verified).await?))
    }

    /// Approves the request a mailed link names: only the original request, only before it
    /// expires. An old link never approves a later extension.
    pub async fn approve_token(&self, caller: &Email, token: &str) -> Result<(ActivationRequest, Outcome), ApiError> {
        let action = Action::Approve { reason: String::new(), end: None };
        // The token is the request's content: what the approval needs is read side by side
        // with the ledger, once the caller is known to be one of its reviewers.
        let plain = from_url_form(token.trim());
        let content = match self.reader.verify_token(&plain).await {
            Ok(request) => Some(Record::from_request(&request, &plain, Timestamp::now())),
            Err(Unverified::Refused(_)) => None,
            Err(Unverified::Keys(error)) => return Err(error.into()),
        };
        let anything = Standing { may_review: true, administrator: true, beneficiary_eligible: true };
        let listed = content.as_ref().filter(|c| decide(c, caller, &action, anything, Timestamp::now()).is_ok());
        let speculative = async {
            match listed {
                Some(content) => self.reads(content, caller, &action, true).await.ok(),
                None => None,
            }
        };
        let (loaded, reads) = tokio::join!(self.of_token(token, true), speculative);
        let (request, verified) = loaded?;
        let reads = reads.filter(|_| listed.is_some_and(|c| same_request(verified.record(), c)));
        Ok((request, self.act_on(caller, verified, action, reads).await?))
    }

    /// A link's token, verified (`unexpired`: as a link to approve must be), and its record.
    async fn of_token(&self, token: &str, unexpired: bool) -> Result<(ActivationRequest, Verified), ApiError> {
        let token = from_url_form(token.trim());
        let request = self.reader.verify_token(&token).await?;
        if unexpired && Timestamp::now() >= request.expires.plus_seconds(crate::gcp::jwks::CLOCK_LEEWAY_SECONDS as i64)
        {
            return Err(TokenError::Jwt(crate::jwt::JwtError::Expired).into());
        }
        if let Some(verified) = self.reader.get(&request.id).await? {
            return Ok((request, verified));
        }
        if Timestamp::now() >= request.expires {
            return Err(TokenError::Jwt(crate::jwt::JwtError::Expired).into());
        }
        let record = Record::from_request(&request, &token, Timestamp::now());
        let stored = match self.reader.ledger.create(&record).await {
            Ok(stored) => stored,
            Err(GcpError::Conflict(_)) => return Ok((request.clone(), self.reader.load(&request.id).await?)),
            Err(other) => return Err(other.into()),
        };
        let verified = self.reader.verify(stored).await?;
        Ok((request, verified))
    }

    /// `caller` does `action` to request `id`: decided, recorded, carried out, told.
    pub async fn act(&self, caller: &Email, id: &str, action: Action) -> Result<Outcome, ApiError> {
        self.act_with(caller, id, |_| action).await
    }

    /// As `act`, with the action made from the request (an extension's end counts from its
    /// start).
    pub async fn act_with(
        &self,
        caller: &Email,
        id: &str,
        action: impl FnOnce(&Record) -> Action,
    ) -> Result<Outcome, ApiError> {
        // The request's content never changes: when it was seen before, what the action
        // needs is read side by side with the ledger, and used only if the record matches.
        // Only a reviewer's decision is read ahead: it is the one that waits for the catalog.
        let known = self.known.get(id).filter(|known| &known.beneficiary != caller && known.reviewers.contains(caller));
        let Some(known) = known else {
            let verified = self.reader.load(id).await?;
            self.remember(&verified);
            let action = action(verified.record());
            return self.act_on(caller, verified, action, None).await;
        };
        let action = action(&known);
        let reviewing = matches!(
            action,
            Action::Approve { .. }
                | Action::Deny { .. }
                | Action::ApproveExtension { .. }
                | Action::Ratify { .. }
                | Action::Reject { .. }
        );
        if !reviewing {
            let verified = self.reader.load(id).await?;
            return self.act_on(caller, verified, action, None).await;
        }
        let (verified, reads) = tokio::join!(self.reader.load(id), self.reads(&known, caller, &action, true));
        let verified = verified?;
        let reads = reads.ok().filter(|_| same_request(verified.record(), &known));
        self.act_on(caller, verified, action, reads).await
    }

    /// Remembers a request's content: everything but its timeline, which never changes.
    fn remember(&self, verified: &Verified) {
        let content = Record { timeline: Vec::new(), ..verified.record().clone() };
        self.known.put(&content.id.clone(), content);
    }

    async fn act_on(
        &self,
        caller: &Email,
        verified: Verified,
        action: Action,
        prefetched: Option<Reads>,
    ) -> Result<Outcome, ApiError> {
        let record = verified.record();
        let before = record.state(Timestamp::now());
        // Refused whatever the catalog would say: answered before any backend call.
        let anything = Standing { may_review: true, administrator: true, beneficiary_eligible: true };
        decide(record, caller, &action, anything, Timestamp::now())?;
        let reads = match prefetched {
            Some(reads) => reads,
            None => self.reads(record, caller, &action, false).await?,
        };
        let standing = self.standing(record, caller, &action, reads.fresh.as_ref()).await?;
        let (fresh, prefetched) = (reads.fresh, reads.policy);
        let mut decided = None;
        // A revocation or an early end removes the binding next: its policy is read while
        // the decision is being recorded.
        let removes = matches!(action, Action::Revoke { .. } | Action::Withdraw { .. } | Action::Reject { .. })
            && before.is_live();
        let removal_policy = async {
            match resource_of(record) {
                Ok(resource) if removes && prefetched.is_none() => self.writer.read(&resource).await.ok(),
                _ => None,
            }
        };
        let recorded = self.reader.ledger.modify_from::<ApiError>(verified.stored.clone(), |current| {
            if !same_request(current, verified.record()) {
                return Err(forged(&current.id));
            }
            let decision = decide(current, caller, &action, standing, Timestamp::now())?;
            decided = Some(decision.clone());
            Ok(match decision {
                Decision::Record(entry) => {
                    let mut next = current.clone();
                    next.timeline.push(entry);
                    Some(next)
                }
                Decision::Complete => None,
            })
        });
        let (written, removal_policy) = tokio::join!(recorded, removal_policy);
        let written = written?.ok_or_else(|| ApiError::backend("the ledger answered no request"))?;
        let prefetched = prefetched.or(removal_policy);
        let mut verified = verified.at(written)?;
        if let Some(Decision::Record(entry)) = &decided {
            // What is still to carry out is announced by its outcome.
            if !in_progress(verified.record().state(Timestamp::now())) {
                self.announce(&mut verified, entry).await;
            }
        }
        let verified = self.settle(verified, fresh, prefetched, &[]).await?;
        let message = note(verified.record(), &action, before).or_else(|| {
            verified.untold.then(|| "Done. Notifying the people concerned failed; it was logged.".to_string())
        });
        Ok(self.outcome(verified, caller, standing, message))
    }

    /// What `action` needs read afresh, asked once for the decision and for the write that may
    /// follow it: the catalog's answer about the request's people, and the policy the write
    /// would start from (`speculative`: read before the ledger answers, so whether the action
    /// completes a quorum is not known yet, and the policy is read in case it does).
    async fn reads(
        &self,
        record: &Record,
        caller: &Email,
        action: &Action,
        speculative: bool,
    ) -> Result<Reads, ApiError> {
        let writes = match action {
            Action::Approve { .. } if speculative => true,
            Action::ApproveExtension { .. } if speculative => true,
            Action::Approve { .. } => record.approvers().len() as u32 + 1 >= record.approvals_needed,
            Action::ApproveExtension { .. } => record.extension_approvers().len() as u32 + 1 >= record.approvals_needed,
            Action::Extend { .. } => record.approvals_needed == 0,
            Action::Deny { .. }
            | Action::Revoke { .. }
            | Action::Withdraw { .. }
            | Action::Ratify { .. }
            | Action::Reject { .. } => false,
        };
        let needs_catalog = !matches!(action, Action::Revoke { .. } | Action::Withdraw { .. });
        let (fresh, policy) = tokio::join!(
            async {
                match needs_catalog {
                    true => self.fresh(record, Some(caller)).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match resource_of(record) {
                    Ok(resource) if writes => self.writer.read(&resource).await.ok(),
                    _ => None,
                }
            }
        );
        Ok(Reads { fresh: fresh?, policy })
    }

    /// How the caller and the beneficiary stand, from what was read.
    async fn standing(
        &self,
        record: &Record,
        caller: &Email,
        action: &Action,
        fresh: Option<&Fresh>,
    ) -> Result<Standing, ApiError> {
        let mut standing = Standing::default();
        let kind = record.activation_type;
        match fresh {
            Some(Fresh::Mpa(holdings)) => {
                standing.may_review = holdings.get(caller).is_some_and(|h| h.may_review());
                standing.beneficiary_eligible = holdings.get(&record.beneficiary).is_some_and(|h| h.holds(kind));
            }
            Some(Fresh::Jit(held)) => {
                standing.beneficiary_eligible = record
                    .entitlements
                    .iter()
                    .all(|text| held.iter().any(|e| e.id.to_string() == *text && e.activation_type == kind));
            }
            None => {}
        }
        if matches!(action, Action::Approve { .. } | Action::Extend { .. }) {
            // The justification as today's policy reads it, as a new request would be.
            self.config.activation.justification.check(&record.justification).map_err(rules::Refusal::from)?;
        }
        match action {
            Action::Revoke { .. } => {
                standing.administrator = !record.approvers().contains(caller) && self.administrator(caller).await?;
            }
            Action::Reject { .. } => {
                standing.administrator = !standing.may_review && self.administrator(caller).await?
            }
            _ => {}
        }
        Ok(standing)
    }

    /// The catalog's fresh answer about a request's people: the beneficiary, and the
    /// reviewers whose approvals a grant counts; for emergency access, whose reviewers are
    /// many and counted after the fact, only the `caller` among them.
    async fn fresh(&self, record: &Record, caller: Option<&Email>) -> Result<Fresh, ApiError> {
        let resource = resource_of(record)?;
        match record.activation_type {
            ActivationType::Jit => {
                let held = self.catalog.user_entitlements(&record.beneficiary, &resource).await?;
                Ok(Fresh::Jit(held.entitlements))
            }
            ActivationType::Mpa => {
                let id = first_entitlement(record)?;
                let mut people = vec![record.beneficiary.clone()];
                match record.break_glass {
                    None => people.extend(record.reviewers.iter().cloned()),
                    Some(_) => people.extend(caller.filter(|c| record.reviewers.contains(c)).cloned()),
                }
                let holdings = self.catalog.standing(&id, ActivationType::Mpa, &people).await?;
                Ok(Fresh::Mpa(holdings))
            }
        }
    }

    /// How long a grant of `record` may last (`rules::longest`).
    fn max_minutes(&self, record: &Record) -> u64 {
        let requirement = match first_entitlement(record) {
            Ok(id) => self.config.approval.policy.requirement(id.role().as_str(), &id.resource().resource_name()),
            Err(_) => Default::default(),
        };
        rules::longest(&self.config.activation, &requirement, rules::Path::of(record))
    }

    /// The requester asks for the grant to last `minutes` from its start (`rules::extension_end`).
    pub async fn extend(&self, caller: &Email, id: &str, minutes: u64) -> Result<Outcome, ApiError> {
        let verified = self.reader.load(id).await?;
        let end = rules::extension_end(verified.record(), minutes, self.max_minutes(verified.record()))?;
        self.act_on(caller, verified, Action::Extend { end }, None).await
    }

    /// Carries out what the request's state asks of IAM, to the end, and records each
    /// outcome (see the module's step 4). `fresh`: the catalog's answer read for this very
    /// action, if any; `prefetched`: the resource's policy read moments ago; `superseded`:
    /// grants whose bindings this grant's write replaces.
    async fn settle(
        &self,
        mut verified: Verified,
        mut fresh: Option<Fresh>,
        mut prefetched: Option<Policy>,
        superseded: &[GrantKey],
    ) -> Result<Verified, ApiError> {
        let mut held = None;
        let mut checked = false;
        let mut conflicts = 0;
        for _ in 0..MAX_STEPS {
            let now = Timestamp::now();
            let record = verified.record();
            match lifecycle::next_step(record, now, held, checked) {
                Step::Done => return Ok(verified),
                Step::Check => {
                    let answer = match fresh.take() {
                        Some(answer) => answer,
                        None => self.fresh(record, None).await?,
                    };
                    let end = match lifecycle::want(record, now) {
                        Want::Bindings { end, .. } => end,
                        Want::Nothing => record.effective_end(),
                    };
                    let approvers = record.approvers_of_grant();
                    let allowed = rules::may_grant(
                        record,
                        end,
                        &approvers,
                        &answer,
                        &self.config.activation,
                        self.max_minutes(record),
                    );
                    match allowed {
                        Ok(()) => checked = true,
                        Err(refusal) => {
                            tracing::warn!(activation_id = %record.id, reason = %refusal, "the grant may no longer be written");
                            verified = self.record_failure(verified, refusal.to_string()).await?;
                            // Recorded: an earlier attempt, stopped before it recorded its
                            // outcome, may have written the binding, so IAM is set to what the
                            // failed request wants (nothing, or the window before the
                            // extension) before the failure is reported. Not recorded (the
                            // record changed meanwhile, and still asks for the grant): the next
                            // turn checks again, and writes nothing the check has refused.
                            let now = Timestamp::now();
                            if !matches!(verified.record().state(now), State::Activating | State::Extending) {
                                let want = lifecycle::want(verified.record(), now);
                                self.write(verified.record(), want, &[], None).await?;
                                held = Some(want);
                            }
                        }
                    }
                }
                Step::Write(want) => match self.write(record, want, superseded, prefetched.take()).await {
                    Ok(()) => held = Some(want),
                    // The policy changed under the write: perhaps the request was revoked
                    // meanwhile. Read the ledger again before writing again.
                    Err(GcpError::Conflict(_)) if conflicts < crate::gcp::iam::MAX_ATTEMPTS => {
                        conflicts += 1;
                        tokio::time::sleep(self.writer.conflict_pause(conflicts)).await;
                        verified = self.reload(&verified).await?;
                    }
                    Err(error) if final_refusal(&error) && lifecycle::failure(record, now, String::new()).is_some() => {
                        tracing::error!(activation_id = %record.id, %error, "Google refused the binding for good");
                        verified = self.record_failure(verified, google_message(&error)).await?;
                    }
                    Err(error) => return Err(error.into()),
                },
                Step::Record(entry) => match self.reader.ledger.append(&verified.stored, entry.clone()).await {
                    Ok(stored) => {
                        verified = verified.at(stored)?;
                        self.announce(&mut verified, &entry).await;
                    }
                    Err(GcpError::Conflict(_)) => verified = self.reload(&verified).await?,
                    Err(other) => return Err(other.into()),
                },
            }
        }
        tracing::warn!(activation_id = %verified.record().id, "the request kept changing; the next touch goes on");
        Err(ApiError::unavailable(format!("request {} kept changing", verified.record().id)))
    }

    /// As `settle`, for a reader: a failure is logged, and the request shown as it stands.
    async fn settle_quietly(&self, verified: Verified) -> Verified {
        if !in_progress(verified.record().state(Timestamp::now())) {
            return verified;
        }
        match self.settle(verified.clone(), None, None, &[]).await {
            Ok(settled) => settled,
            Err(error) => {
                tracing::warn!(activation_id = %verified.record().id, code = error.code(), reason = error.message(), "completing the request failed; it is shown as it stands");
                verified
            }
        }
    }

    /// Records why the grant or its extension could not be written.
    async fn record_failure(&self, verified: Verified, reason: String) -> Result<Verified, ApiError> {
        let Some(entry) = lifecycle::failure(verified.record(), Timestamp::now(), reason) else {
            return Err(ApiError::backend("the grant could not be written"));
        };
        match self.reader.ledger.append(&verified.stored, entry.clone()).await {
            Ok(stored) => {
                let mut verified = verified.at(stored)?;
                self.announce(&mut verified, &entry).await;
                Ok(verified)
            }
            Err(GcpError::Conflict(_)) => self.reload(&verified).await,
            Err(other) => Err(other.into()),
        }
    }

    async fn reload(&self, verified: &Verified) -> Result<Verified, ApiError> {
        let stored = self
            .reader
            .ledger
            .get(&verified.record().id)
            .await?
            .ok_or_else(|| ApiError::request_not_found(&verified.record().id))?;
        verified.at(stored)
    }

    /// Makes IAM hold what `want` says for the request, and nothing of the `superseded`.
    async fn write(
        &self,
        record: &Record,
        want: Want,
        superseded: &[GrantKey],
        prefetched: Option<Policy>,
    ) -> Result<(), GcpError> {
        let resource = resource_of(record).map_err(|e| GcpError::InvalidArgument(e.message().to_string()))?;
        let (bindings, reason) = match want {
            Want::Bindings { start, end } => {
                let bindings = activations(record, start, end)?.iter().map(Activation::binding).collect();
                let reason = match record.approvers().into_iter().map(Email::as_str).collect::<Vec<_>>() {
                    approvers if approvers.is_empty() => format!("JIT access {}: self-approved", record.id),
                    approvers => format!("JIT access {}: approved by {}", record.id, approvers.join(", ")),
                };
                (bindings, reason)
            }
            Want::Nothing => {
                (Vec::new(), format!("JIT access {}: {}", record.id, record.state(Timestamp::now()).name()))
            }
        };
        self.writer.set_grant_once(&resource, &grant_key(record)?, &bindings, superseded, &reason, prefetched).await?;
        Ok(())
    }

    /// Publishes the event of a recorded entry; a failure is logged, never returned: the
    /// decision stands either way.
    async fn announce(&self, verified: &mut Verified, entry: &Entry) {
        if let Some(event) = event::lifecycle_event(verified.record(), entry, self.base_url())
            && publish_or_log(self.publisher.as_ref(), &event).await.is_err()
        {
            verified.untold = true;
        }
    }

    fn outcome(&self, verified: Verified, caller: &Email, standing: Standing, message: Option<String>) -> Outcome {
        let actions = available_actions(verified.record(), caller, standing, Timestamp::now());
        Outcome { verified, actions, message }
    }

    /// Whether `caller` is an administrator (`ADMINISTRATORS`, directly or through a group).
    pub async fn administrator(&self, caller: &Email) -> Result<bool, ApiError> {
        let administrators = &self.config.approval.administrators;
        if administrators.contains(&caller.iam_member()) {
            return Ok(true);
        }
        if !administrators.iter().any(|a| a.starts_with("group:")) {
            return Ok(false);
        }
        let groups = self.catalog.groups_of(caller).await?;
        Ok(is_administrator(administrators, caller, &groups))
    }

    /// A self-activation: eligibility, the ledger's record and the policy are read at once;
    /// the record is deleted again if the caller may not have it. Starting now, it
    /// supersedes the caller's active self-activations of the same roles: their bindings are
    /// replaced by its own in one write, and they end saying which request superseded them.
    pub async fn self_activate(
        &self,
        caller: &Email,
        resource: &ResourceId,
        asked: SelfActivation,
    ) -> Result<Outcome, ApiError> {
        let now = Timestamp::now();
        let record = Record {
            id: asked.id.clone(),
            activation_type: ActivationType::Jit,
            beneficiary: caller.clone(),
            reviewers: Vec::new(),
            entitlements: asked.entitlements.iter().map(ToString::to_string).collect(),
            justification: asked.justification.clone(),
            start: asked.window.start().unix_seconds(),
            end: asked.window.end().unix_seconds(),
            request_expiry: asked.window.start().unix_seconds(),
            approvals_needed: 0,
            approver_reason_required: false,
            break_glass: None,
            token: None,
            timeline: vec![Entry::Requested { at: now.unix_seconds(), actor: caller.clone() }],
        };
        let (held, created, policy, open) = tokio::join!(
            self.catalog.user_entitlements(caller, resource),
            self.reader.ledger.create(&record),
            self.writer.read(resource),
            self.reader.ledger.open_of(caller, OPEN_LISTED),
        );
        let stored = created?;
        let refusal = (|| -> Result<Vec<Verified>, ApiError> {
            let held = held?;
            for id in &asked.entitlements {
                rules::require_entitlement(&held.entitlements, id, ActivationType::Jit)?;
            }
            Ok(Vec::new())
        })();
        let refusal = match refusal {
            Ok(_) => self.open_requests(caller, &record, open).await,
            Err(error) => Err(error),
        };
        let open = match refusal {
            Ok(open) => open,
            Err(error) => {
                // Nothing was granted: the record goes again. If it cannot go, it is closed
                // as failed, never left ACTIVATING for the sweeper to grant after a refusal
                // that was not about eligibility (too many open, a catalog that failed).
                if let Err(cleanup) = self.reader.ledger.delete(&stored).await {
                    let failed =
                        Entry::ActivationFailed { at: now.unix_seconds(), reason: error.message().to_string() };
                    if let Err(closing) = self.reader.ledger.append(&stored, failed).await {
                        tracing::error!(activation_id = %record.id, error = %cleanup, closing = %closing, "a refused self-activation's record could be neither deleted nor closed");
                    }
                }
                return Err(error);
            }
        };
        let verified = self.reader.verify(stored).await?;
        let superseded = if asked.starts_now { self.supersede(&record, &open).await } else { Vec::new() };
        let keys: Vec<GrantKey> = superseded.iter().map(|v| grant_key(v.record())).collect::<Result<_, _>>()?;
        let fresh = Fresh::Jit(held_entitlements(&asked.entitlements));
        let settled = self.settle(verified, Some(fresh), policy.ok(), &keys).await;
        let granted = settled.as_ref().is_ok_and(|v| v.record().is_activated());
        // The superseded grants' bindings went with this write: record that they are gone.
        for old in superseded {
            let held = granted.then_some(Want::Nothing);
            if let Err(error) = self.settle_from(old, held).await {
                tracing::warn!(
                    code = error.code(),
                    reason = error.message(),
                    "a superseded grant is not yet recorded ended; the sweeper completes it"
                );
            }
        }
        self.granted(caller, &record.id, settled)
    }

    /// What a grant written at once answers: the request, or why it was not granted.
    fn granted(&self, caller: &Email, id: &str, settled: Result<Verified, ApiError>) -> Result<Outcome, ApiError> {
        let verified = settled.map_err(|error| {
            if error.status().is_server_error() {
                ApiError::unavailable(format!(
                    "granting {id} did not complete ({}); it is recorded as ACTIVATING and completes on its own within a few minutes",
                    error.message()
                ))
            } else {
                error
            }
        })?;
        if verified.record().state(Timestamp::now()) == State::ActivationFailed {
            let reason = verified.record().timeline.iter().rev().find_map(|e| match e {
                Entry::ActivationFailed { reason, .. } => Some(reason.clone()),
                _ => None,
            });
            return Err(ApiError::forbidden(
                "activation_failed",
                format!(
                    "the access was not granted ({}); request {id} is recorded as ACTIVATION_FAILED",
                    reason.unwrap_or_default(),
                ),
            ));
        }
        let standing = Standing { beneficiary_eligible: true, ..Standing::default() };
        let message =
            verified.untold.then(|| "Access granted. Sending the notification failed; it was logged.".to_string());
        Ok(self.outcome(verified, caller, standing, message))
    }

    /// Emergency access (break glass): granted at once through the same steps as any grant,
    /// then ratified after the fact by the role's quorum among everyone who may approve it.
    /// Eligibility, the role's reviewers, the caller's uses of break glass, their open
    /// requests and the policy are read at once; the record and the updated uses are written
    /// in one commit, so two at once cannot both pass `BREAK_GLASS_LIMIT`.
    pub async fn break_glass(
        &self,
        caller: &Email,
        resource: &ResourceId,
        asked: BreakGlassAsk,
    ) -> Result<Outcome, ApiError> {
        let settings = &self.config.activation;
        let signer = self.signer.as_ref().ok_or_else(|| ApiError::backend("this function makes no requests"))?;
        let limit = self.config.approval.break_glass_limit;
        let now = Timestamp::now();
        let id = &asked.entitlement;
        let requirement = self.config.approval.policy.requirement(id.role().as_str(), &resource.resource_name());
        // No emergency path, or too long: refused before anything is read.
        let rule = rules::break_glass(&requirement, id, &[], limit, now)?;
        let longest = rules::longest(settings, &requirement, rules::Path::BreakGlass);
        let window = rules::asked_window(now, None, asked.minutes, longest, settings)?;
        let entitlement = crate::entitlement::Entitlement { id: id.clone(), activation_type: ActivationType::Mpa };
        let (held, qualified, uses, open, policy) = tokio::join!(
            self.catalog.user_entitlements(caller, resource),
            self.catalog.reviewers(&entitlement),
            self.reader.ledger.break_glass_uses(caller),
            self.reader.ledger.open_of(caller, OPEN_LISTED),
            self.writer.read(resource),
        );
        rules::require_entitlement(&held?.entitlements, id, ActivationType::Mpa)?;
        let mut uses = uses?;
        rules::break_glass(&requirement, id, &uses.times, limit, now)?;
        let qualified = qualified?;
        let everyone: Vec<Email> = qualified.peers.iter().chain(&qualified.designated).cloned().collect();
        let request = ActivationRequest {
            id: asked.id.clone(),
            beneficiary: caller.clone(),
            reviewers: rules::break_glass_reviewers(caller, &everyone, id)?,
            entitlement: id.clone(),
            justification: asked.justification.trim().to_string(),
            window,
            // The token's lifetime: it is never approved, only verified, as long as it is kept.
            expires: window.end(),
            approvals_needed: requirement.approvals,
            approver_reason_required: requirement.approver_reason_required,
            review_deadline: Some(now.plus_seconds(rule.review_within_minutes as i64 * 60)),
        };
        let token = signer.sign(&request.claims(signer.issuer(), now)).await?;
        let record = Record::from_request(&request, &token, now);
        self.open_requests(caller, &record, open).await?;
        let mut attempt = 0;
        let stored = loop {
            rules::break_glass(&requirement, id, &uses.times, limit, now)?;
            let kept: Vec<i64> =
                uses.times.iter().copied().filter(|at| *at > now.unix_seconds() - limit.period_seconds).collect();
            match self.reader.ledger.create_break_glass(&record, &uses, &kept, limit.period_seconds).await {
                Ok(stored) => break stored,
                // Another emergency grant of the caller's landed first: count it too.
                Err(GcpError::Conflict(_)) if attempt < 3 => {
                    attempt += 1;
                    uses = self.reader.ledger.break_glass_uses(caller).await?;
                }
                Err(other) => return Err(other.into()),
            }
        };
        tracing::warn!(activation_id = %record.id, beneficiary = %caller, role = %id, "break glass: emergency access granted at once, awaiting review");
        let verified = Verified { stored, request: Some(request), untold: false };
        let holding = crate::eligibility::Holding { jit: false, mpa: true, designated: false };
        let fresh = Fresh::Mpa(BTreeMap::from([(caller.clone(), holding)]));
        let settled = self.settle(verified, Some(fresh), policy.ok(), &[]).await;
        let mut outcome = self.granted(caller, &record.id, settled)?;
        if outcome.verified.untold() {
            // Detection is what break glass keeps: if nobody could be told, the person who
            // broke it must know, and say so themselves.
            tracing::error!(activation_id = %record.id, beneficiary = %caller, "break glass: emergency access granted but its reviewers were not told");
            outcome.message = Some(format!(
                "Emergency access granted, but telling its reviewers and the administrators failed: tell them yourself now, naming request {}.",
                record.id
            ));
        }
        Ok(outcome)
    }

    /// The caller's open requests, verified, refused when there are too many for one of
    /// the entitlements of `record`.
    async fn open_requests(
        &self,
        caller: &Email,
        record: &Record,
        open: Result<Vec<Stored>, GcpError>,
    ) -> Result<Vec<Verified>, ApiError> {
        let open = self.reader.verified(open?).await?;
        let now = Timestamp::now();
        let live: Vec<&Verified> =
            open.iter().filter(|v| v.record().id != record.id && !v.record().state(now).is_terminal()).collect();
        for id in &record.entitlements {
            let same: Vec<&str> =
                live.iter().filter(|v| v.record().entitlements.contains(id)).map(|v| v.record().id.as_str()).collect();
            // A self-activation starting now replaces the active ones it repeats.
            let replaced = live
                .iter()
                .filter(|v| supersedable(v.record(), record, now) && v.record().entitlements.contains(id))
                .count();
            if same.len().saturating_sub(replaced) >= rules::MAX_OPEN_PER_ENTITLEMENT {
                let _ = caller;
                return Err(
                    rules::Refusal::TooManyOpen { id: id.clone(), count: same.len(), open: same.join(", ") }.into()
                );
            }
        }
        Ok(open)
    }

    /// Marks the active self-activations `record` repeats as superseded by it; returns those
    /// it marked.
    async fn supersede(&self, record: &Record, open: &[Verified]) -> Vec<Verified> {
        let now = Timestamp::now();
        let candidates: Vec<&Verified> = open.iter().filter(|v| supersedable(v.record(), record, now)).collect();
        let marked = futures::future::join_all(candidates.into_iter().map(|old| async move {
            let entry = Entry::Superseded { at: Timestamp::now().unix_seconds(), by: record.id.clone() };
            let written = self
                .append_when(old.stored.clone(), &entry, |current| {
                    if !same_request(current, old.record()) {
                        return Err(forged(&current.id));
                    }
                    Ok(current.state(Timestamp::now()) == State::Active)
                })
                .await;
            match written {
                Ok((Some(stored), _)) if stored.record.superseded_by() == Some(record.id.as_str()) => {
                    old.at(stored).ok()
                }
                _ => None,
            }
        }))
        .await;
        marked.into_iter().flatten().collect()
    }

    /// Carries a request out starting from what IAM is known to hold for it.
    async fn settle_from(&self, verified: Verified, held: Option<Want>) -> Result<Verified, ApiError> {
        let mut verified = verified;
        if let Some(held) = held {
            // Its bindings are gone: the only step left is to record that.
            if let Step::Record(entry) = lifecycle::next_step(verified.record(), Timestamp::now(), Some(held), true)
                && let Ok(stored) = self.reader.ledger.append(&verified.stored, entry.clone()).await
            {
                verified = verified.at(stored)?;
                self.announce(&mut verified, &entry).await;
                return Ok(verified);
            }
        }
        self.settle(verified, None, None, &[]).await
    }

    /// A peer-approval request: the caller's eligibility, the reviewers' standing, the signed
    /// token and the caller's open requests, all at once; then the record, then the event.
    pub async fn request(
        &self,
        caller: &Email,
        resource: &ResourceId,
        asked: PeerRequest,
    ) -> Result<(ActivationRequest, Outcome), ApiError> {
        let settings = &self.config.activation;
        let signer = self.signer.as_ref().ok_or_else(|| ApiError::backend("this function makes no requests"))?;
        let now = Timestamp::now();
        let requirement =
            self.config.approval.policy.requirement(asked.entitlement.role().as_str(), &resource.resource_name());
        let longest = rules::longest(settings, &requirement, rules::Path::PeerApproval);
        let window = rules::asked_window(now, asked.start, asked.minutes, longest, settings)?;
        // The reviewers' count, before anything is read; who they are, after.
        let chosen = rules::reviewers(caller, &asked.reviewers, &asked.reviewers, settings, requirement.approvals)?;
        let request = ActivationRequest {
            id: asked.id.clone(),
            beneficiary: caller.clone(),
            reviewers: chosen.clone(),
            entitlement: asked.entitlement.clone(),
            justification: asked.justification.trim().to_string(),
            window,
            expires: rules::request_expiry(now, &window, settings),
            approvals_needed: requirement.approvals,
            approver_reason_required: requirement.approver_reason_required,
            review_deadline: None,
        };
        let claims = request.claims(signer.issuer(), now);
        // Signed before the checks finish: a refused request's token is never stored or sent.
        let (held, holdings, token, open) = tokio::join!(
            self.catalog.user_entitlements(caller, resource),
            self.catalog.standing(&asked.entitlement, ActivationType::Mpa, &chosen),
            signer.sign(&claims),
            self.reader.ledger.open_of(caller, OPEN_LISTED),
        );
        rules::require_entitlement(&held?.entitlements, &asked.entitlement, ActivationType::Mpa)?;
        let holdings = holdings?;
        let qualified: Vec<Email> =
            chosen.iter().filter(|p| holdings.get(*p).is_some_and(|h| h.may_review())).cloned().collect();
        rules::reviewers(caller, &chosen, &qualified, settings, requirement.approvals)?;
        let token = token?;
        let record = Record::from_request(&request, &token, now);
        self.open_requests(caller, &record, open).await?;
        let stored = self.reader.ledger.create(&record).await?;
        let verified = Verified { stored, request: Some(request.clone()), untold: false };
        let action_url = format!("{}/?activation={}", self.base_url(), to_url_form(&token));
        // Nothing is granted yet: if the reviewers cannot be told, the request has failed.
        publish_or_log(self.publisher.as_ref(), &event::request_activation(&request, self.base_url(), &action_url))
            .await?;
        let standing = Standing { beneficiary_eligible: true, ..Standing::default() };
        Ok((request, self.outcome(verified, caller, standing, None)))
    }

    /// The sweeper's part for one open request: carry out what its state still asks, or, for
    /// a live grant, make IAM hold its window (`snapshot`: our bindings on its resource as the
    /// sweeper read them). A live grant whose binding is gone is flagged, never restored.
    pub async fn reconcile(&self, verified: Verified, snapshot: &[ActivationBinding]) -> Result<Reconciled, ApiError> {
        // Emergency access past its review deadline unreviewed is escalated first; what IAM
        // must hold for it is seen to all the same.
        let record = verified.record();
        if record.review(Timestamp::now()) == Some(Review::Unreviewed) && !record.escalated() {
            let (verified, escalated) = match self.escalate(verified.clone()).await {
                Ok(escalated) => escalated,
                // Not told (Pub/Sub failing): the next sweep tries again; IAM is held to the
                // ledger all the same.
                Err(error) => {
                    self.reconcile_grant(verified, snapshot).await?;
                    return Err(error);
                }
            };
            // Written just now, it is no longer listed as open: nothing to close.
            if escalated && verified.record().state(Timestamp::now()).is_terminal() {
                return Ok(Reconciled::Escalated);
            }
            let rest = self.reconcile_grant(verified, snapshot).await?;
            return Ok(if escalated && rest == Reconciled::Unchanged { Reconciled::Escalated } else { rest });
        }
        self.reconcile_grant(verified, snapshot).await
    }

    async fn reconcile_grant(
        &self,
        verified: Verified,
        snapshot: &[ActivationBinding],
    ) -> Result<Reconciled, ApiError> {
        let now = Timestamp::now();
        let record = verified.record();
        let state = record.state(now);
        if in_progress(state) {
            let settled = self.settle(verified, None, None, &[]).await?;
            return Ok(if settled.record().state(Timestamp::now()) == state {
                Reconciled::Unchanged
            } else {
                Reconciled::Completed
            });
        }
        if state.is_terminal() {
            // Emergency access awaiting its review stays open until the review is done.
            if record.is_open(now) {
                return Ok(Reconciled::Unchanged);
            }
            self.reader.close(&verified).await?;
            return Ok(Reconciled::Closed);
        }
        if !matches!(state, State::Active | State::Scheduled) {
            return Ok(Reconciled::Unchanged);
        }
        let key = grant_key(record)?;
        let present: Vec<&ActivationBinding> = snapshot.iter().filter(|b| key.owns(b)).collect();
        let expected = match lifecycle::want(record, now) {
            Want::Bindings { start, end } => activations(record, start, end)?,
            Want::Nothing => Vec::new(),
        };
        let matches = expected.len() == present.len()
            && expected.iter().all(|a| present.iter().any(|p| same_access(a, p) && p.window == a.window));
        // Flagged already, and still gone: nothing more to say (it is never restored).
        if matches || (present.is_empty() && record.externally_modified()) {
            return Ok(Reconciled::Unchanged);
        }
        // What the sweeper read may be a moment old: read both again before acting.
        let verified = self.reload(&verified).await?;
        let record = verified.record();
        let resource = resource_of(record)?;
        let now = Timestamp::now();
        if !matches!(record.state(now), State::Active | State::Scheduled) {
            return Ok(Reconciled::Unchanged);
        }
        let key = grant_key(record)?;
        let policy = self.writer.read(&resource).await?;
        let present = policy.bindings.iter().filter_map(read_activation_binding).filter(|b| key.owns(b)).count();
        if present == 0 {
            return self.flag(verified).await;
        }
        let Want::Bindings { start, end } = lifecycle::want(record, now) else {
            return Ok(Reconciled::Unchanged);
        };
        tracing::warn!(activation_id = %record.id, "a live grant's binding did not match the ledger; rewritten to the ledger's window");
        // Written over the policy just read, etag and all: a revocation that removed the
        // binding since then makes this write conflict, never brings the binding back.
        match self.write(record, Want::Bindings { start, end }, &[], Some(policy)).await {
            Ok(()) => Ok(Reconciled::Rewritten),
            Err(GcpError::Conflict(_)) => Ok(Reconciled::Unchanged),
            Err(other) => Err(other.into()),
        }
    }

    /// Records that emergency access went unreviewed past its deadline, once, and tells
    /// administrators (the event `BreakGlassUnreviewed`).
    async fn escalate(&self, verified: Verified) -> Result<(Verified, bool), ApiError> {
        let entry = Entry::Escalated { at: Timestamp::now().unix_seconds() };
        // Unlike every other entry, the escalation is told before it is recorded: escalating
        // is nothing but telling, so a failed publish must leave it to the next sweep (at
        // worst the administrators hear twice), never closed with nobody told. The record
        // listed at the sweep's start may be minutes old: read it again before telling.
        let verified = self.reload(&verified).await?;
        let unreviewed = |record: &Record| record.review(Timestamp::now()) == Some(Review::Unreviewed);
        if !unreviewed(verified.record()) || verified.record().escalated() {
            return Ok((verified, false));
        }
        let mut told = verified.record().clone();
        told.timeline.push(entry.clone());
        if let Some(event) = event::lifecycle_event(&told, &entry, self.base_url()) {
            publish_or_log(self.publisher.as_ref(), &event).await?;
        }
        let (written, escalated) = self
            .append_when(verified.stored.clone(), &entry, |current| Ok(unreviewed(current) && !current.escalated()))
            .await?;
        match written {
            Some(stored) if escalated => {
                tracing::warn!(activation_id = %stored.record.id, beneficiary = %stored.record.beneficiary, "break glass: emergency access was not ratified by its deadline; escalated to the administrators");
                Ok((verified.at(stored)?, true))
            }
            Some(stored) => Ok((verified.at(stored)?, false)),
            None => Ok((verified, false)),
        }
    }

    /// Appends `entry` to the request's current record if `when` holds of it, deciding again
    /// on the record read afresh after a lost race: the version last read or written, and
    /// whether the entry was appended.
    async fn append_when(
        &self,
        stored: Stored,
        entry: &Entry,
        when: impl Fn(&Record) -> Result<bool, ApiError>,
    ) -> Result<(Option<Stored>, bool), ApiError> {
        let mut appended = false;
        let written = self
            .reader
            .ledger
            .modify_from::<ApiError>(stored, |current| {
                appended = when(current)?;
                if !appended {
                    return Ok(None);
                }
                let mut next = current.clone();
                next.timeline.push(entry.clone());
                Ok(Some(next))
            })
            .await?;
        Ok((written, appended))
    }

    /// Flags a live grant whose binding was removed behind the ledger's back.
    async fn flag(&self, verified: Verified) -> Result<Reconciled, ApiError> {
        let entry = Entry::ExternallyModified { at: Timestamp::now().unix_seconds() };
        let (written, flagged) = self
            .append_when(verified.stored.clone(), &entry, |current| {
                let live = matches!(current.state(Timestamp::now()), State::Active | State::Scheduled);
                Ok(!current.externally_modified() && live)
            })
            .await?;
        match written {
            Some(stored) if flagged => {
                tracing::warn!(activation_id = %stored.record.id, "an active grant's binding was removed outside JIT access");
                let mut verified = verified.at(stored)?;
                self.announce(&mut verified, &entry).await;
                Ok(Reconciled::Flagged)
            }
            _ => Ok(Reconciled::Unchanged),
        }
    }

    /// Removes the bindings of a request the ledger does not hold as live: closed, unknown,
    /// or failing verification. `id`'s bindings only, on `resource`.
    pub async fn remove_unowned(&self, resource: &ResourceId, id: &str) -> Result<bool, ApiError> {
        let live = match self.reader.get(id).await {
            Ok(Some(verified)) => verified.record().state(Timestamp::now()).is_live(),
            Ok(None) => false,
            Err(error) if error.status().is_client_error() => false,
            Err(error) => return Err(error),
        };
        if live {
            return Ok(false);
        }
        let key = GrantKey { request: id.to_string(), legacy: Vec::new() };
        let reason = format!("JIT access {id}: no live request owns this binding");
        Ok(self.writer.set_grant(resource, &key, &[], &[], &reason, None).await?)
    }
}

/// What reconciling one request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    Unchanged,
    /// An activation, extension, revocation or end left half-done was completed.
    Completed,
    /// A live grant's binding was set back to the ledger's window.
    Rewritten,
    /// A live grant's binding was gone: flagged `EXTERNALLY_MODIFIED`.
    Flagged,
    /// Emergency access went unreviewed past its deadline: escalated.
    Escalated,
    /// A request that ended was written again as closed.
    Closed,
}

/// IAM work is still to be done, or its outcome still to be recorded.
fn in_progress(state: State) -> bool {
    matches!(state, State::Activating | State::Extending | State::Revoking | State::Ending)
}

/// Whether `old` is an active self-activation that `new` (a self-activation starting now)
/// repeats: same person, and every one of its roles is among the new one's.
fn supersedable(old: &Record, new: &Record, now: Timestamp) -> bool {
    new.activation_type == ActivationType::Jit
        && new.start <= now.unix_seconds() + 60
        && old.id != new.id
        && old.activation_type == ActivationType::Jit
        && old.beneficiary == new.beneficiary
        && old.state(now) == State::Active
        && old.entitlements.iter().all(|id| new.entitlements.contains(id))
}

/// Entitlements a self-activation was just found eligible for.
fn held_entitlements(ids: &[EntitlementId]) -> Vec<crate::entitlement::Entitlement> {
    ids.iter()
        .map(|id| crate::entitlement::Entitlement { id: id.clone(), activation_type: ActivationType::Jit })
        .collect()
}

/// A final answer from Google: a retry cannot change it.
fn final_refusal(error: &GcpError) -> bool {
    matches!(
        error,
        GcpError::FailedPrecondition(_) | GcpError::Denied(_) | GcpError::InvalidArgument(_) | GcpError::NotFound(_)
    )
}

/// Google's own words, for the record and the requester.
fn google_message(error: &GcpError) -> String {
    format!("Google refused the binding: {error}")
}

/// A note for the person who just acted on a request that was `before`.
fn note(record: &Record, action: &Action, before: State) -> Option<String> {
    let now = Timestamp::now();
    match (action, record.state(now)) {
        (Action::Approve { .. }, _) if before.is_live() => Some(
            "This request had already been approved; the access is granted. Your approval is recorded; it approves no extension."
                .into(),
        ),
        (Action::Approve { .. }, State::ApprovalAwaited) => Some(format!(
            "Your approval is recorded: {} of {} approvals.",
            record.approvers().len(),
            record.approvals_needed
        )),
        (Action::ApproveExtension { .. }, _) if record.pending_extension().is_some() => Some(format!(
            "Your approval of the extension is recorded: {} of {} approvals.",
            record.extension_approvers().len(),
            record.approvals_needed
        )),
        (Action::Extend { .. }, _) if record.pending_extension().is_some() => {
            Some("The extension awaits your reviewers' approval; the grant runs on meanwhile.".into())
        }
        (Action::Ratify { .. }, _) => Some(match record.review(now) {
            Some(Review::Ratified) => "Your ratification completes the review: the emergency access is ratified.".into(),
            _ => format!(
                "Your ratification is recorded: {} of {} ratifications.",
                record.ratifiers().len(),
                record.approvals_needed
            ),
        }),
        (Action::Reject { .. }, _) if before.is_live() => {
            Some("The emergency access is rejected and its binding removed; everyone concerned is told.".into())
        }
        (Action::Reject { .. }, _) => Some("The emergency access is rejected; everyone concerned is told.".into()),
        (_, State::ActivationFailed) => Some("Granting the access failed; see the timeline for Google's answer.".into()),
        _ => None,
    }
}

fn resource_of(record: &Record) -> Result<ResourceId, ApiError> {
    Ok(first_entitlement(record)?.resource().clone())
}

fn first_entitlement(record: &Record) -> Result<EntitlementId, ApiError> {
    let first = record.entitlements.first().ok_or_else(|| forged(&record.id))?;
    Ok(EntitlementId::parse(first)?)
}

/// The bindings a record grants, one per entitlement, for the window `[start, end)`.
pub fn activations(record: &Record, start: i64, end: i64) -> Result<Vec<Activation>, GcpError> {
    let invalid = |what: String| GcpError::InvalidArgument(format!("request {}: {what}", record.id));
    let time = |s: i64| Timestamp::from_unix_seconds(s).ok_or_else(|| invalid("a time is out of range".into()));
    let window = ActivationWindow::new(time(start)?, time(end)?).map_err(|e| invalid(e.to_string()))?;
    // Checked against the policy when decided; here it only goes to the description.
    let policy = JustificationPolicy::new(".*", "").map_err(|e| invalid(e.to_string()))?;
    let justification = policy.check(&record.justification).map_err(|e| invalid(e.to_string()))?;
    let approval = match record.approvers().into_iter().next() {
        Some(first) => Approval::ApprovedBy(first.clone()),
        None => Approval::SelfApproved,
    };
    let resource = record.entitlements.first().and_then(|e| EntitlementId::parse(e).ok()).map(|e| e.resource().clone());
    record
        .entitlements
        .iter()
        .map(|text| {
            let entitlement = EntitlementId::parse(text).map_err(|e| invalid(e.to_string()))?;
            if Some(entitlement.resource()) != resource.as_ref() {
                return Err(invalid("its roles are on several resources".into()));
            }
            Ok(Activation {
                request: record.id.clone(),
                beneficiary: record.beneficiary.clone(),
                entitlement,
                window,
                approval: approval.clone(),
                justification: justification.clone(),
            })
        })
        .collect()
}

/// Same member, role and resource condition.
fn same_access(activation: &Activation, binding: &ActivationBinding) -> bool {
    binding.member == activation.beneficiary
        && &binding.role == activation.entitlement.role()
        && binding.resource_condition.as_ref() == activation.entitlement.resource_condition()
}

/// The bindings that are the record's: those naming it, and, for a grant written before
/// bindings named their request, those with one of the windows it may have been written with.
fn grant_key(record: &Record) -> Result<GrantKey, GcpError> {
    let mut ends: BTreeSet<i64> = BTreeSet::from([record.end, record.effective_end()]);
    ends.extend(record.timeline.iter().filter_map(|e| match e {
        Entry::Extended { end, .. } => Some(*end),
        _ => None,
    }));
    let mut legacy = Vec::new();
    for end in ends.into_iter().filter(|end| *end > record.start) {
        for activation in activations(record, record.start, end)? {
            legacy.push(ActivationBinding {
                member: activation.beneficiary.clone(),
                role: activation.entitlement.role().clone(),
                resource_condition: activation.entitlement.resource_condition().cloned(),
                window: activation.window,
                request: None,
            });
        }
    }
    Ok(GrantKey { request: record.id.clone(), legacy })
}

/// Whether `user` is named in `ADMINISTRATORS`, directly or through one of `groups`.
pub fn is_administrator(administrators: &[String], user: &Email, groups: &BTreeSet<String>) -> bool {
    administrators.iter().any(|member| {
        member == &user.iam_member() || member.strip_prefix("group:").is_some_and(|group| groups.contains(group))
    })
}

/// Bindings on `policy` by the request they name, for the sweeper.
pub fn grants_by_request(policy: &Policy) -> BTreeMap<String, Vec<ActivationBinding>> {
    crate::policy::grants(policy)
}
