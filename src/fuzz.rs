//! Entry points for the fuzzers (`fuzz/`, cargo fuzz) and for the random-input test of
//! `cargo test`, which feed them the same way: each takes arbitrary bytes, drives one of
//! the server's decoders of outside input as a request would, and panics only when an
//! invariant breaks (a panic inside is a bug either way).
//!
//! Covered: DNS request handling (fast and general path, UDP and TCP), the
//! `Listening-Configs` parser, the beat JSON, and the HTTP parameter plumbing with the
//! decoders behind it (service names, metadata, health checkers). There is no
//! peer-message decoder yet: Distro and Raft do not exist.

use std::sync::Arc;

use bytes::Bytes;
use hickory_proto::op::Message;
use hickory_server::net::xfer::Protocol;

use crate::dns::server::Dispatcher;
use crate::http::nacos_v1::instance::{beat_key, beat_registration};
use crate::http::params::Params;
use crate::model::{HealthChecker, Host, ServiceKey, parse_metadata};
use crate::naming::registry::Registry;
use crate::naming::{InstanceSpec, NamingService};
use crate::settings::DnsSettings;

/// `Listening-Configs` as the listener handler and the permission check read it
/// (decoded once more, then parsed).
pub fn listening_configs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = crate::http::nacos_v1::config::listening_entries(&text) {
        for e in &entries {
            let _ = (e.key.group_key(), e.md5.len());
        }
    }
}

/// A beat JSON as the beat handler reads it: the instance key, then the registration
/// of a full beat.
pub fn beat_json(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let params = Params::new(
        "serviceName=svc&ip=10.0.0.1&port=8080&clusterName=DEFAULT".into(),
        Bytes::new(),
    );
    if let Ok((key, cluster)) = beat_key(Some(&raw), &params) {
        let _ = beat_registration(&raw, &key, &cluster);
    }
}

/// Query string and form body (split at the first NUL byte) read as every handler
/// reads parameters, and the values handed to the decoders behind them.
pub fn params(data: &[u8]) {
    let (query, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let params = Params::new(
        String::from_utf8_lossy(query).into_owned(),
        Bytes::copy_from_slice(body),
    );
    let Ok(params) = params.within_limits() else {
        return;
    };
    let _ = params.service_key();
    let _ = params.port("port");
    let _ = params.strict_boolean("healthy");
    if let Some(raw) = params.optional("metadata") {
        let _ = parse_metadata(raw);
    }
    if let Some(raw) = params.optional("healthChecker") {
        let _ = HealthChecker::parse(raw);
    }
    if let Some(raw) = params.optional("ip") {
        let _ = Host::parse(raw);
    }
}

/// DNS request handling over a registry with a few services and the shipped static
/// zone, as the UDP and TCP servers run it.
pub struct DnsTarget {
    runtime: tokio::runtime::Runtime,
    dispatcher: Dispatcher,
    udp_payload: usize,
}

impl DnsTarget {
    /// A dispatcher over services `stock` (IPv4, IPv6 and host-name instances) and
    /// `big` (40 instances), and the static zones of `zones_dir`.
    pub fn new(zones_dir: &std::path::Path) -> Self {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let spec = |ip: &str| InstanceSpec {
            ip: ip.into(),
            host: Host::parse(ip).unwrap_or(Host::Name("invalid".into())),
            port: 8080,
            cluster: "DEFAULT".into(),
            weight: 1.0,
            enabled: true,
            healthy: true,
            ephemeral: true,
            metadata: Default::default(),
        };
        let stock = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        for ip in ["10.0.0.1", "fd00::1", "db-1.example"] {
            let _ = naming.register(&stock, spec(ip));
        }
        let big = ServiceKey::new("dev", "G", "big");
        for i in 1..=40 {
            let _ = naming.register(&big, spec(&format!("10.1.0.{i}")));
        }
        let settings = DnsSettings {
            zones_dir: zones_dir.to_path_buf(),
            ..DnsSettings::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dispatcher = runtime
            .block_on(async { crate::dns::dispatcher(&settings, naming.view()) })
            .expect("a dispatcher");
        Self {
            runtime,
            dispatcher,
            udp_payload: usize::from(settings.udp_payload),
        }
    }

    /// Handles `data` as a UDP and as a TCP query. Panics when an answer breaks an
    /// invariant: a response to a response, an answer that is not a DNS response with
    /// the query's id, or a UDP answer over the payload limit.
    pub fn query(&self, data: &[u8]) {
        let src = "127.0.0.1:5300".parse().expect("address");
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let mut out = Vec::new();
            let answer = if self
                .dispatcher
                .try_fast(data, src, protocol, None, &mut out)
            {
                Some(out)
            } else {
                self.runtime
                    .block_on(self.dispatcher.handle_slow(data, src, protocol))
            };
            let Some(answer) = answer else {
                continue;
            };
            assert!(
                data.len() >= 12 && data[2] & 0x80 == 0,
                "answered a packet that is not a query"
            );
            assert_eq!(answer[..2], data[..2], "the answer keeps the query's id");
            assert!(answer[2] & 0x80 != 0, "the answer is a response");
            if protocol == Protocol::Udp {
                // 512 bytes unless the query carried an OPT record (then at most the
                // server's payload); a query the fast parser cannot read is held to
                // the larger bound.
                let limit = match crate::dns::wire::parse(data) {
                    Some(q) if q.edns.is_none() => 512,
                    _ => self.udp_payload,
                };
                assert!(answer.len() <= limit, "{} bytes over UDP", answer.len());
            }
            if answer.len() > 12 && answer[3] & 0x0f == 0 {
                Message::from_vec(&answer).expect("a NOERROR answer parses");
            }
        }
    }
}
