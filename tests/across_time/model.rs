//! Seeded random histories against the real functions on the emulator: several requesters and
//! reviewers request, approve, deny, withdraw, revoke, extend, narrow, view and sweep, in
//! random interleavings, with Google failing (503s, conflicts, latency), handlers stopped
//! part-way, eligibility changing and the clock moving. After each history and one sweeper
//! run, for every request: a live grant has exactly its bindings, ending when the ledger says;
//! any other request has no binding that still grants; no binding of ours that still grants
//! belongs to no live request.
//!
//! `MODEL_HISTORIES` sets how many (CI runs the default), `MODEL_SEED` replays one;
//! `scripts/model-check` runs 10,000.

use std::collections::BTreeMap;
use std::time::Duration;

use common::lifecycle::State;
use common::timestamp::Timestamp;
use serde_json::{Value, json};

use crate::deployment::*;

/// Histories per CI run, shared by `WORKERS` deployments side by side.
const DEFAULT_HISTORIES: u64 = 200;
/// Deployments side by side (`MODEL_WORKERS`). They share the process's clock, so a seed
/// replays its own steps but not the clock moves of the histories beside it (each step's log
/// line says the time); `MODEL_WORKERS=1` makes a whole batch replay exactly.
const WORKERS: usize = 3;
const STEPS: u64 = 14;

/// SplitMix64: small, seeded, the same everywhere, so a failing seed replays.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[tokio::test]
async fn random_histories_keep_iam_to_what_the_ledger_says() {
    let _turn = exclusive().await;
    let replay = std::env::var("MODEL_SEED").ok().and_then(|s| s.parse::<u64>().ok());
    let histories = std::env::var("MODEL_HISTORIES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_HISTORIES);
    let seeds: Vec<u64> = match replay {
        Some(seed) => vec![seed],
        None => (0..histories).collect(),
    };
    let next = std::sync::Arc::new(std::sync::Mutex::new(seeds.into_iter()));
    let workers = std::env::var("MODEL_WORKERS").ok().and_then(|s| s.parse().ok()).unwrap_or(WORKERS);
    let workers = (0..workers.max(1)).map(|_| {
        let next = next.clone();
        async move {
            let system = Deployment::start(&[]).await;
            let initial = system.backend.emulator.state.world().policies();
            let mut ran = 0u64;
            loop {
                let seed = next.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                let Some(seed) = seed else { return ran };
                reset(&system, &initial).await;
                let mut log = Vec::new();
                if let Err(failure) = history(&system, seed, &mut log).await {
                    panic!("history {seed} failed: {failure}\nreplay with MODEL_SEED={seed}\n{}", log.join("\n"));
                }
                ran += 1;
            }
        }
    });
    let ran: u64 = futures::future::join_all(workers).await.into_iter().sum();
    eprintln!("{ran} histories of {STEPS} steps: every one converged to what the ledger says");
}

/// Back to the example organization: policies as they were, an empty ledger, no faults.
async fn reset(system: &Deployment, initial: &BTreeMap<String, common::policy::Policy>) {
    system.clear_faults().await;
    system.backend.emulator.state.world().restore_policies(initial.clone());
    *emulator::state::lock(&system.backend.emulator.state.firestore) = Default::default();
}

/// What a history has made so far.
#[derive(Default)]
struct Known {
    peer: Vec<String>,
    own: Vec<String>,
}

async fn history(system: &Deployment, seed: u64, log: &mut Vec<String>) -> Result<(), String> {
    let mut random = Random(seed);
    let mut known = Known::default();
    let mut stopped = false;
    for _ in 0..STEPS {
        match random.below(14) {
            0..=8 => step(system, &mut random, &mut known, log, None).await,
            9 => {
                let minutes = 1 + random.below(60) as i64;
                log.push(format!("clock +{minutes} min"));
                advance_minutes(minutes);
            }
            10 => {
                let fault = fault(&mut random);
                log.push(format!("fault {fault}"));
                system.inject(fault).await;
            }
            11 => {
                // A handler stopped part-way: Google is slow, the call is cut off.
                let (api, method) = *random.pick(&[
                    ("resourcemanager", "setIamPolicy"),
                    ("resourcemanager", "getIamPolicy"),
                    ("firestore", "commit"),
                    ("asset", "batchGetEffectiveIamPolicies"),
                ]);
                system.inject(json!({"api": api, "method": method, "latencyMs": 250, "count": 1})).await;
                let limit = Duration::from_millis(50 + random.below(250));
                stopped = true;
                log.push(format!("slow {api}.{method}, stopped after {limit:?}:"));
                step(system, &mut random, &mut known, log, Some(limit)).await;
            }
            12 => {
                let (role, who) = *random.pick(&[("roles/storage.admin", CAROL), ("roles/compute.admin", DAVE)]);
                if random.chance(50) {
                    log.push(format!("{who} loses {role}"));
                    system.remove_eligibility(role, who).await;
                } else {
                    log.push(format!("{who} (again) holds {role}"));
                    restore_eligibility(system, role, who).await;
                }
            }
            _ => {
                // Two at once.
                let mut other = Random(random.next());
                let mut known_other = Known { peer: known.peer.clone(), own: known.own.clone() };
                let mut log_other = Vec::new();
                if random.chance(50) {
                    // Widen the race: one of the two is slow somewhere.
                    let (api, method) = *random.pick(&[
                        ("resourcemanager", "getIamPolicy"),
                        ("resourcemanager", "setIamPolicy"),
                        ("asset", "batchGetEffectiveIamPolicies"),
                        ("firestore", "commit"),
                    ]);
                    system.inject(json!({"api": api, "method": method, "latencyMs": 200, "count": 1})).await;
                    log.push(format!("slow {api}.{method}"));
                }
                log.push("two at once:".into());
                tokio::join!(
                    step(system, &mut random, &mut known, log, None),
                    step(system, &mut other, &mut known_other, &mut log_other, None)
                );
                log.extend(log_other.into_iter().map(|l| format!("  || {l}")));
                known.peer.extend(known_other.peer);
                known.own.extend(known_other.own);
            }
        }
    }
    system.clear_faults().await;
    if !stopped {
        // Nothing was stopped part-way: what the ledger calls over holds nothing even before
        // the sweeper comes, since a writer that lost to a revocation undoes its own write.
        closed_hold_nothing(system).await?;
    }
    // The clock is the process's, and the other workers' histories move it too: an emergency
    // grant must be escalated by this sweep only if its deadline had passed when it began.
    let swept_at = Timestamp::now();
    let summary = system.sweep().await;
    log.push(format!("sweep: {summary}"));
    converged(system, swept_at).await
}

async fn records(system: &Deployment) -> Result<Vec<common::gcp::ledger::Stored>, String> {
    let ledger = system.ledger();
    let mut records = Vec::new();
    for who in [ALICE, CAROL, DAVE] {
        records.extend(ledger.made_by(&crate::support::email(who), 500).await.map_err(|e| e.to_string())?);
    }
    Ok(records)
}

async fn closed_hold_nothing(system: &Deployment) -> Result<(), String> {
    let now = Timestamp::now();
    let granting = system.granting("projects/project-1", now).await;
    for stored in records(system).await? {
        let state = stored.record.state(now);
        let closed = state.is_terminal() && state != State::Expired;
        if closed && granting.iter().any(|b| b.request.as_deref() == Some(&stored.record.id)) {
            return Err(format!(
                "{} is {} and still holds a binding, before any sweep",
                stored.record.id,
                state.name()
            ));
        }
    }
    Ok(())
}

fn fault(random: &mut Random) -> Value {
    match random.below(5) {
        0 => json!({"api": "resourcemanager", "method": "setIamPolicy", "status": 503, "count": 1 + random.below(4)}),
        1 => json!({"api": "resourcemanager", "method": "setIamPolicy", "status": 409, "count": 1 + random.below(3)}),
        2 => json!({"api": "firestore", "method": "commit", "status": 503, "count": 1}),
        3 => json!({"api": "pubsub", "method": "publish", "status": 503, "count": 1 + random.below(3)}),
        _ => json!({"api": "resourcemanager", "method": "getIamPolicy", "status": 503, "count": 1 + random.below(4)}),
    }
}

/// One person's action, chosen at random among what makes sense now.
async fn step(
    system: &Deployment,
    random: &mut Random,
    known: &mut Known,
    log: &mut Vec<String>,
    limit: Option<Duration>,
) {
    let limit = limit.unwrap_or(Duration::from_secs(60));
    let call = |user: &'static str, method: &'static str, path: String, body: Option<Value>| async move {
        system.call_within(user, method, &path, body, limit).await
    };
    let peer = (!known.peer.is_empty()).then(|| random.pick(&known.peer).clone());
    let own = (!known.own.is_empty()).then(|| random.pick(&known.own).clone());
    let (what, reply) = match random.below(14) {
        12 => {
            // Emergency access: granted at once, reviewed after the fact.
            let body =
                json!({"entitlementId": COMPUTE, "justification": "INC-1", "activationTimeout": 5 + random.below(30)});
            let reply = call(DAVE, "POST", "/api/projects/project-1/roles/break-glass".into(), Some(body)).await;
            if let Some(id) = reply.as_ref().map(Reply::id).filter(|id| !id.is_empty()) {
                known.peer.push(id);
            }
            ("dave breaks glass".to_string(), reply)
        }
        13 => {
            let Some(id) = peer else { return };
            let (who, action) = *random.pick(&[
                (ALICE, "ratify"),
                (BOB, "ratify"),
                (CAROL, "ratify"),
                (DAVE, "ratify"),
                (BOB, "reject"),
                (ADMIN, "reject"),
            ]);
            (
                format!("{who} {action}s {id}"),
                call(who, "POST", format!("/api/requests/{id}/{action}"), Some(json!({"reason": "seen"}))).await,
            )
        }
        0 | 1 => {
            let reviewers: Vec<&str> = if random.chance(50) { vec![BOB, CAROL] } else { vec![BOB, CAROL, DAVE] };
            let mut body = json!({"entitlementId": COMPUTE, "justification": "BUG-1", "peers": reviewers,
                "activationTimeout": 10 + random.below(50)});
            if random.chance(25) {
                body["startTime"] = json!(rfc3339(now() + 60 + random.below(1800) as i64));
            }
            let reply = call(ALICE, "POST", "/api/projects/project-1/roles/request".into(), Some(body)).await;
            if let Some(id) = reply.as_ref().map(Reply::id).filter(|id| !id.is_empty()) {
                known.peer.push(id);
            }
            ("alice requests".to_string(), reply)
        }
        2 => {
            let mut body = json!({"entitlementIds": [STORAGE], "justification": "BUG-1", "activationTimeout": 5 + random.below(55)});
            if random.chance(30) {
                body["startTime"] = json!(rfc3339(now() + 60 + random.below(3600) as i64));
            }
            let reply = call(CAROL, "POST", "/api/projects/project-1/roles/self-activate".into(), Some(body)).await;
            if let Some(id) = reply.as_ref().map(Reply::id).filter(|id| !id.is_empty()) {
                known.own.push(id);
            }
            ("carol self-activates".to_string(), reply)
        }
        3 | 4 => {
            let Some(id) = peer else { return };
            let who = *random.pick(&[BOB, CAROL, DAVE]);
            let mut body = json!({"reason": "ok"});
            if random.chance(25) {
                body["endTime"] = json!(rfc3339(now() + 120 + random.below(1800) as i64));
            }
            (
                format!("{who} approves {id} {body}"),
                call(who, "POST", format!("/api/requests/{id}/approve"), Some(body)).await,
            )
        }
        5 => {
            let Some(id) = peer else { return };
            let who = *random.pick(&[BOB, DAVE]);
            (
                format!("{who} denies {id}"),
                call(who, "POST", format!("/api/requests/{id}/deny"), Some(json!({"reason": "no"}))).await,
            )
        }
        6 => {
            let (who, id) = match (random.chance(50), &peer, &own) {
                (true, Some(id), _) | (false, Some(id), None) => (ALICE, id.clone()),
                (_, _, Some(id)) => (CAROL, id.clone()),
                _ => return,
            };
            (
                format!("{who} withdraws {id}"),
                call(who, "POST", format!("/api/requests/{id}/withdraw"), Some(json!({}))).await,
            )
        }
        7 => {
            let id = match (&peer, &own) {
                (Some(p), Some(o)) => {
                    if random.chance(50) {
                        p.clone()
                    } else {
                        o.clone()
                    }
                }
                (Some(id), None) | (None, Some(id)) => id.clone(),
                (None, None) => return,
            };
            let who = *random.pick(&[BOB, ADMIN]);
            (
                format!("{who} revokes {id}"),
                call(who, "POST", format!("/api/requests/{id}/revoke"), Some(json!({"reason": "over"}))).await,
            )
        }
        8 => {
            let (who, id) = match (random.chance(50), &peer, &own) {
                (true, Some(id), _) | (false, Some(id), None) => (ALICE, id.clone()),
                (_, _, Some(id)) => (CAROL, id.clone()),
                _ => return,
            };
            let body = json!({"activationTimeout": 30 + random.below(200)});
            (
                format!("{who} extends {id} {body}"),
                call(who, "POST", format!("/api/requests/{id}/extend"), Some(body)).await,
            )
        }
        9 => {
            let Some(id) = peer else { return };
            let who = *random.pick(&[BOB, CAROL, DAVE]);
            let view = system.get(ALICE, &format!("/api/requests/{id}")).await;
            let Some(end) = view.body["pendingExtensionEndTime"].as_i64() else { return };
            let end = if random.chance(30) { end - 60 } else { end };
            let body = json!({"endTime": rfc3339(end)});
            (
                format!("{who} approves the extension of {id} until {end}"),
                call(who, "POST", format!("/api/requests/{id}/approve-extension"), Some(body)).await,
            )
        }
        10 => {
            let id = match (&peer, &own) {
                (Some(id), _) => id.clone(),
                (None, Some(id)) => id.clone(),
                (None, None) => return,
            };
            let who = if known.peer.contains(&id) { ALICE } else { CAROL };
            (format!("{who} views {id}"), call(who, "GET", format!("/api/requests/{id}"), None).await)
        }
        _ => {
            let summary = tokio::time::timeout(limit, system.sweep()).await;
            log.push(format!("sweep: {}", summary.map_or("stopped".to_string(), |s| s.to_string())));
            return;
        }
    };
    let answer = match reply {
        Some(reply) => format!("{} {} {}", reply.status, reply.state(), reply.code()),
        None => "stopped part-way".into(),
    };
    log.push(format!("t={} {what} -> {answer}", now()));
}

async fn restore_eligibility(system: &Deployment, role: &str, who: &str) {
    let marker = if role == "roles/storage.admin" { "jitAccessConstraint" } else { "multiPartyApprovalConstraint" };
    let binding = json!({"role": role, "members": [format!("user:{who}")],
        "condition": {"title": "Eligible again", "expression": format!("has({{}}.{marker})")}});
    system
        .modify_policy("projects/project-1", |policy| {
            let bindings = policy["bindings"].as_array_mut().expect("bindings");
            if !bindings.contains(&binding) {
                bindings.push(binding.clone());
            }
        })
        .await;
}

/// The invariant, after the history and one sweep that began at `swept_at`.
async fn converged(system: &Deployment, swept_at: Timestamp) -> Result<(), String> {
    let now = Timestamp::now();
    let records = records(system).await?;
    let granting = system.granting("projects/project-1", now).await;
    let mut live = std::collections::BTreeSet::new();
    for stored in &records {
        let record = &stored.record;
        let state = record.state(now);
        let bindings: Vec<_> = granting.iter().filter(|b| b.request.as_deref() == Some(&record.id)).collect();
        if matches!(state, State::Activating | State::Extending | State::Revoking | State::Ending) {
            return Err(format!("{} is still {} after the sweep", record.id, state.name()));
        }
        if matches!(state, State::Active | State::Scheduled) {
            live.insert(record.id.clone());
            let wanted = record.entitlements.len();
            let right = bindings.len() == wanted
                && bindings.iter().all(|b| {
                    b.window.start().unix_seconds() == record.start
                        && b.window.end().unix_seconds() == record.effective_end()
                });
            if !right {
                return Err(format!(
                    "{} is {} until {}, IAM holds {:?}",
                    record.id,
                    state.name(),
                    record.effective_end(),
                    bindings.iter().map(|b| (b.window.start(), b.window.end())).collect::<Vec<_>>()
                ));
            }
        } else if !bindings.is_empty() {
            return Err(format!("{} is {} and still holds {} binding(s)", record.id, state.name(), bindings.len()));
        }
        // Emergency access past its deadline unreviewed is escalated by the sweep.
        if record.review(swept_at) == Some(common::lifecycle::Review::Unreviewed) && !record.escalated() {
            return Err(format!("{} went unreviewed past its deadline and the sweep did not escalate it", record.id));
        }
    }
    if let Some(orphan) = granting.iter().find(|b| b.request.as_ref().is_some_and(|id| !live.contains(id))) {
        return Err(format!(
            "a binding of {:?} grants until {} and belongs to no live request",
            orphan.request,
            orphan.window.end()
        ));
    }
    Ok(())
}
