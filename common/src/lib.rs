//! The shared core of the JIT access functions.
//!
//! Domain modules (pure, no I/O; time, keys and randomness come in as arguments):
//! [`condition`], [`entitlement`], [`activation`], [`policy`], [`justification`],
//! [`email`], [`timestamp`], [`token`], [`jwt`], [`iap`], [`config`].
//!
//! Edges: [`keys`] (local signing keys), [`http`] (the error type), [`runner`] (serving a
//! function's router).

pub mod activation;
pub mod condition;
pub mod config;
pub mod email;
pub mod entitlement;
pub mod gcp;
pub mod http;
pub mod iap;
pub mod justification;
pub mod jwt;
pub mod keys;
pub mod policy;
pub mod runner;
pub mod timestamp;
pub mod token;

#[cfg(test)]
mod tidy;
