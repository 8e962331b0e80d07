//! Cross-function tests, one binary: each module drives real servers on 127.0.0.1, with the
//! official SDK clients pointed at the emulator.

mod adapters;
mod agreement;
mod api;
mod break_glass;
mod browser;
mod chat;
mod deployment;
mod emulator_rules;
mod emulator_wire;
mod hardening;
mod harness;
mod ledger;
mod lifecycle;
mod mailer;
mod openapi;
mod ordinary_organization;
mod permissions;
mod quota;
mod resilience;
mod rest_adapters;
mod runner;
mod security_doc;
mod story;
mod support;
mod sweeper;
mod webdriver;
