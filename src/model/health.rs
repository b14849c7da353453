//! Cluster-level health-check settings, as Nacos's `ClusterMetadata` / 1.x `Cluster`:
//! which probe checks the persistent instances of a cluster, and on which port.
//!
//! The checker JSON is Nacos's, polymorphic on `type` (`shared/nacos-api.md` §3.3):
//! `{"type":"TCP"}`, `{"type":"HTTP","path":"/health","headers":"k:v|k2:v2",
//! "expectedResponseCode":200}`, `{"type":"MYSQL","user":"u","pwd":"p","cmd":"select 1"}`,
//! `{"type":"NONE"}`. No I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Nacos's default check port of a cluster (`defaultCheckPort`), used when
/// [`ClusterMeta::use_instance_port`] is off.
pub const DEFAULT_CHECK_PORT: u16 = 80;

/// How the persistent instances of a cluster are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HealthChecker {
    /// Connect over TCP; a connection that opens within the timeout is healthy.
    #[serde(rename = "TCP")]
    Tcp,
    /// `GET http://ip:port<path>`; healthy when the status is `expectedResponseCode`.
    /// (Nacos itself ignores `expectedResponseCode` and wants 200; Nacre honours it.)
    #[serde(rename = "HTTP", rename_all = "camelCase")]
    Http {
        /// Request path, e.g. `/health`; empty means `/`.
        #[serde(default)]
        path: String,
        /// Extra request headers in Nacos's form `k1:v1|k2:v2`.
        #[serde(default)]
        headers: String,
        /// The status code that counts as healthy. Default 200.
        #[serde(default = "default_expected_code")]
        expected_response_code: u16,
    },
    /// Log in to MySQL/MariaDB and run `cmd`; healthy when it succeeds. When `cmd` reads
    /// the `read_only` variable and it is `ON`, the instance is a replica and counts as
    /// unhealthy (as Nacos `MysqlHealthCheckProcessor`).
    #[serde(rename = "MYSQL")]
    Mysql {
        /// User name.
        #[serde(default)]
        user: String,
        /// Password.
        #[serde(default)]
        pwd: String,
        /// The statement to run; empty means `SELECT 1`.
        #[serde(default)]
        cmd: String,
    },
    /// No probe: health is set by hand with `PUT /nacos/v1/ns/health/instance`.
    #[serde(rename = "NONE")]
    None,
}

fn default_expected_code() -> u16 {
    200
}

impl HealthChecker {
    /// Parses Nacos's checker JSON. Errors name the field `healthChecker`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let checker: HealthChecker = serde_json::from_str(raw).map_err(|e| {
            format!(
                "Param 'healthChecker' is illegal, it must be a JSON object whose \"type\" is TCP, HTTP, MYSQL or NONE: {e}"
            )
        })?;
        if let HealthChecker::Http { path, headers, .. } = &checker {
            if !path.is_empty() && !path.starts_with('/') {
                return Err(format!(
                    "Param 'healthChecker' is illegal, its path must start with '/': {path}"
                ));
            }
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("Param 'healthChecker' is illegal, its path holds whitespace".into());
            }
            http_headers(headers)?;
        }
        Ok(checker)
    }

    /// Nacos's name of the checker type: `TCP`, `HTTP`, `MYSQL` or `NONE`.
    pub fn type_name(&self) -> &'static str {
        match self {
            HealthChecker::Tcp => "TCP",
            HealthChecker::Http { .. } => "HTTP",
            HealthChecker::Mysql { .. } => "MYSQL",
            HealthChecker::None => "NONE",
        }
    }

    /// The checker as Nacos renders it.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing an enum of strings and numbers cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Splits Nacos's header list `k1:v1|k2:v2` into pairs. Errors name the field.
pub fn http_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split('|')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| match h.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(format!(
                "Param 'healthChecker' is illegal, headers must be 'name:value' separated by '|': {h}"
            )),
        })
        .collect()
}

/// The settings of one cluster of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMeta {
    /// The probe for its persistent instances. Default TCP (as Nacos).
    pub health_checker: HealthChecker,
    /// Port probed when `use_instance_port` is off. Default 80.
    pub check_port: u16,
    /// Probe each instance's own port (Nacos `useIPPort4Check`). Default true.
    pub use_instance_port: bool,
    /// Free-form cluster metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Default for ClusterMeta {
    fn default() -> Self {
        Self {
            health_checker: HealthChecker::Tcp,
            check_port: DEFAULT_CHECK_PORT,
            use_instance_port: true,
            metadata: BTreeMap::new(),
        }
    }
}

impl ClusterMeta {
    /// The port a probe of an instance listening on `instance_port` connects to.
    pub fn probe_port(&self, instance_port: u16) -> u16 {
        if self.use_instance_port {
            instance_port
        } else {
            self.check_port
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_json_round_trips_as_nacos_writes_it() {
        let http = HealthChecker::parse(
            r#"{"type":"HTTP","path":"/health","headers":"a:1|b:2","expectedResponseCode":204,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            http,
            HealthChecker::Http {
                path: "/health".into(),
                headers: "a:1|b:2".into(),
                expected_response_code: 204
            }
        );
        assert_eq!(http.to_json()["expectedResponseCode"], 204);
        assert_eq!(
            HealthChecker::parse(r#"{"type":"TCP"}"#).unwrap(),
            HealthChecker::Tcp
        );
        assert_eq!(
            HealthChecker::parse(r#"{"type":"HTTP"}"#).unwrap(),
            HealthChecker::Http {
                path: String::new(),
                headers: String::new(),
                expected_response_code: 200
            }
        );
        let mysql =
            HealthChecker::parse(r#"{"type":"MYSQL","user":"u","pwd":"p","cmd":"select 1"}"#)
                .unwrap();
        assert_eq!(mysql.type_name(), "MYSQL");
        assert_eq!(mysql.to_json()["pwd"], "p");
        assert_eq!(
            HealthChecker::parse(r#"{"type":"NONE"}"#)
                .unwrap()
                .to_json()["type"],
            "NONE"
        );
    }

    #[test]
    fn bad_checkers_are_refused_naming_the_field() {
        for raw in [
            "",
            "{",
            r#"{"type":"ICMP"}"#,
            r#"{"path":"/"}"#,
            r#"{"type":"HTTP","path":"health"}"#,
            r#"{"type":"HTTP","headers":"novalue"}"#,
        ] {
            let e = HealthChecker::parse(raw).unwrap_err();
            assert!(e.contains("healthChecker"), "{raw}: {e}");
        }
        assert_eq!(
            http_headers("a:1| b : 2 |").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }
}
