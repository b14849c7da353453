//! Nacre: a Nacos-compatible naming and configuration server that answers first of
//! all as an authoritative DNS server.
//!
//! Bird's-eye view: apps register over Nacos's HTTP API ([`http`]) into the in-memory
//! registry ([`naming::registry`]); beats keep ephemeral instances alive
//! ([`health`]), probes check persistent ones; every reader — DNS ([`dns`]), the list
//! API, UDP push ([`push`]) — answers from immutable registry snapshots. The config
//! center ([`config`]) serves reads from its cache and keeps the durable record in
//! SQLite or MySQL ([`storage`]). [`app`] wires the parts from [`settings`].
//!
//! Dependency rule (each level uses only the levels below it):
//!
//! ```text
//! app, main
//! dns, http             front doors
//! health, push          drivers
//! naming, config         use cases
//! auth                   users, roles, permissions, tokens
//! replication            Raft (openraft), over bytes
//! cluster                members, responsibility
//! storage                sqlx repositories
//! model, settings, telemetry, net
//! ```
//!
//! `tests/it/architecture.rs` checks it on the source.
//!
//! `naming` never imports axum or hickory; `dns` never writes to the registry.

pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod fuzz;
pub mod health;
pub mod http;
pub mod model;
pub mod naming;
pub mod net;
pub mod push;
pub mod replication;
pub mod settings;
pub mod storage;
pub mod telemetry;
