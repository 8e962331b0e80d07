//! Requests followed across time, interleavings and faults, against the real functions on the
//! emulator: the security review's reproductions, each past its deadlines and in its races
//! (`scenarios`), and seeded random histories of many actors checked against what the ledger
//! says (`model`). The clock of the whole process moves (`common::timestamp::travel`), so the
//! tests here take turns.

#[path = "../system/support.rs"]
#[allow(dead_code)]
mod support;

mod deployment;
mod model;
mod scenarios;
