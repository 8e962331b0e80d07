//! The pure core of JIT access: values in, values out; `now`, keys and randomness come in as
//! arguments. This crate's `Cargo.toml` names no async runtime, HTTP stack or Google SDK, so
//! nothing here can do I/O: the compiler refuses the import.
//!
//! - Who holds what: [`condition`] (eligibility markers in IAM conditions), [`entitlement`],
//!   [`eligibility`] (from policies and groups), [`approval_policy`].
//! - What is written: [`iam`] (IAM policies in Google's shape), [`activation`] (the binding of
//!   a grant, naming its request), [`policy`] (the pure updates of a policy).
//! - What a request is and may become: [`lifecycle`] (timeline, state, what IAM must hold, the
//!   plan to get there), [`rules`] (every decision about requests and approvals, each refusal
//!   once), [`token`] (the signed request), [`event`] (what subscribers are told).
//! - Identity and keys: [`jwt`], [`iap`], [`keys`]; [`config`] (settings from the
//!   environment), [`email`], [`justification`], [`timestamp`], [`trace`], [`chat`] (cards).

pub mod activation;
pub mod approval_policy;
pub mod chat;
pub mod condition;
pub mod config;
pub mod eligibility;
pub mod email;
pub mod entitlement;
pub mod event;
pub mod iam;
pub mod iap;
pub mod justification;
pub mod jwt;
pub mod keys;
pub mod lifecycle;
pub mod policy;
pub mod rules;
pub mod timestamp;
pub mod token;
pub mod trace;

#[cfg(test)]
mod tidy;
