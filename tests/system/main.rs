//! Cross-function tests, one binary: each module drives functions served for real.

mod runner;
