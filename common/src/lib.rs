//! The shared edges of the JIT access functions, around the pure core ([`domain`], re-exported
//! here module by module, so `common::lifecycle` is `domain::lifecycle`).
//!
//! - [`door`]: the one door to a request (every ledger read verified, every action decided,
//!   recorded, carried out and told on one path).
//! - [`gcp`]: the only code that talks to Google, through the official SDK clients and our
//!   REST client.
//! - [`http`]: the one error type, extractors, wire shapes, audit entries; [`runner`]: serving
//!   a function's router.

pub use domain::{
    activation, approval_policy, chat, condition, config, eligibility, email, entitlement, event, iam, iap,
    justification, jwt, keys, lifecycle, policy, rules, timestamp, token, trace,
};

pub mod door;
pub mod gcp;
pub mod http;
pub mod runner;

// The core's tidy check, run here over this crate's own sources. (The pure core is its own
// crate, `domain`, with no I/O dependency to import: no fence is needed.)
#[cfg(test)]
#[path = "../domain/src/tidy.rs"]
mod tidy;
