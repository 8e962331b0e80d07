//! The shared core of the JIT access functions.
//!
//! Domain modules (pure, no I/O; time, keys and randomness come in as arguments):
//! [`condition`], [`eligibility`], [`entitlement`], [`activation`], [`policy`], [`justification`],
//! [`email`], [`timestamp`], [`token`], [`jwt`], [`iap`], [`config`], [`event`], [`rules`],
//! [`trace`], [`lifecycle`], [`approval_policy`], [`chat`].
//!
//! The one door to a request: [`door`] (every ledger read verified, every action decided,
//! recorded, carried out and told on one path).
//!
//! Edges: [`gcp`] (Google APIs through the official SDK), [`keys`] (local signing keys),
//! [`http`] (errors, extractors, wire shapes), [`runner`] (serving a function's router).

pub mod activation;
pub mod approval_policy;
pub mod chat;
pub mod condition;
pub mod config;
pub mod door;
pub mod eligibility;
pub mod email;
pub mod entitlement;
pub mod event;
pub mod gcp;
pub mod http;
pub mod iap;
pub mod justification;
pub mod jwt;
pub mod keys;
pub mod lifecycle;
pub mod policy;
pub mod rules;
pub mod runner;
pub mod timestamp;
pub mod token;
pub mod trace;

#[cfg(test)]
mod tidy;
