//! One integration binary (faster linking): every test starts real servers in-process on
//! 127.0.0.1 port 0 and talks to them over real sockets.

mod architecture;
mod auth;
mod beats;
mod binary;
mod cluster;
mod config;
mod config_edges;
mod connections;
mod dns;
mod dns_abuse;
mod dns_locality;
mod dns_names;
mod dns_sizes;
mod durability;
mod fuzz_inputs;
mod health;
mod limits;
mod naming_http;
mod naming_semantics;
mod persistence;
mod push;
mod raft;
mod readme;
mod security;
mod support;
