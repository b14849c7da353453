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
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What reads show instead of a MYSQL checker's password.
pub const MASKED_PASSWORD: &str = "******";

impl std::fmt::Debug for HealthChecker {
    /// As the derived form, never printing the MYSQL password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.masked() {
            HealthChecker::Tcp => f.write_str("Tcp"),
            HealthChecker::Http {
                path,
                headers,
                expected_response_code,
            } => f
                .debug_struct("Http")
                .field("path", &path)
                .field("headers", &headers)
                .field("expected_response_code", &expected_response_code)
                .finish(),
            HealthChecker::Mysql { user, pwd, cmd } => f
                .debug_struct("Mysql")
                .field("user", &user)
                .field("pwd", &pwd)
                .field("cmd", &cmd)
                .finish(),
            HealthChecker::None => f.write_str("None"),
        }
    }
}

/// Longest MYSQL checker `cmd`, bytes.
pub const MAX_MYSQL_CMD_BYTES: usize = 1024;

/// Functions a MYSQL checker's `cmd` may not call: they wait, take locks, read files
/// of the database host, or wait for replication.
const REFUSED_FUNCTIONS: [&str; 10] = [
    "sleep",
    "benchmark",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "is_free_lock",
    "load_file",
    "master_pos_wait",
    "source_pos_wait",
    "master_gtid_wait",
];

/// Checks that `cmd` is exactly one read-only statement, a `SELECT` or a `SHOW`, with
/// a SQL parser (sqlparser's MySQL dialect), never by matching substrings:
/// * no comments at all (MySQL runs `/*! … */` as code, which a parser takes for a
///   comment) and no optimizer hints;
/// * one statement;
/// * a `SHOW …`, or a query whose every part is a `SELECT`, `VALUES` or `TABLE`,
///   without `INTO`, `FOR UPDATE` / `LOCK IN SHARE MODE`, and calling none of
///   [`REFUSED_FUNCTIONS`].
///
/// The probe runs it besides as a prepared statement (one statement only) in a
/// read-only transaction with a statement time limit. Errors say why, for a 400.
pub fn read_only_statement(cmd: &str) -> Result<(), String> {
    use sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::Parser;
    use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
    use std::ops::ControlFlow;

    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, cmd)
        .tokenize()
        .map_err(|e| format!("is not valid SQL: {e}"))?;
    if tokens.iter().any(|t| {
        matches!(
            t,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
            )
        )
    }) {
        return Err("must not hold comments".into());
    }
    let statements =
        Parser::parse_sql(&dialect, cmd).map_err(|e| format!("is not valid SQL: {e}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!(
            "must be exactly one statement, not {}",
            statements.len()
        ));
    };
    match statement {
        Statement::Query(_)
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowCharset(_) => {}
        _ => return Err("must be a SELECT or a SHOW statement".into()),
    }

    struct ReadOnly(Option<String>);
    fn body_is_read_only(body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(select) => select.into.is_none() && select.optimizer_hints.is_empty(),
            SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => true,
            SetExpr::SetOperation { left, right, .. } => {
                body_is_read_only(left) && body_is_read_only(right)
            }
            _ => false,
        }
    }
    impl Visitor for ReadOnly {
        type Break = ();

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if !query.locks.is_empty() || query.for_clause.is_some() {
                self.0 = Some("must not lock rows".into());
                return ControlFlow::Break(());
            }
            if !body_is_read_only(&query.body) {
                self.0 = Some("must only read: no INTO, INSERT, UPDATE or DELETE".into());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr {
                let name = f.name.to_string().to_ascii_lowercase();
                let last = name.rsplit('.').next().unwrap_or(&name).trim_matches('`');
                if REFUSED_FUNCTIONS.contains(&last) {
                    self.0 = Some(format!("must not call {last}()"));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut check = ReadOnly(None);
    let _ = statement.visit(&mut check);
    match check.0 {
        Some(why) => Err(why),
        None => Ok(()),
    }
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
        if let HealthChecker::Mysql { user, pwd, cmd } = &checker {
            if user.len() > 128 || pwd.len() > 256 || cmd.len() > MAX_MYSQL_CMD_BYTES {
                return Err(format!(
                    "Param 'healthChecker' is illegal, its user is at most 128 bytes, pwd 256 and cmd {MAX_MYSQL_CMD_BYTES}"
                ));
            }
            if !cmd.trim().is_empty() {
                read_only_statement(cmd)
                    .map_err(|e| format!("Param 'healthChecker' is illegal, its cmd {e}"))?;
            }
        }
        if let HealthChecker::Http {
            path,
            headers,
            expected_response_code,
        } = &checker
        {
            if !path.is_empty() && !path.starts_with('/') {
                return Err(format!(
                    "Param 'healthChecker' is illegal, its path must start with '/': {path}"
                ));
            }
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("Param 'healthChecker' is illegal, its path holds whitespace".into());
            }
            probe_headers(headers)?;
            if !(200..=299).contains(expected_response_code) {
                return Err(format!(
                    "Param 'healthChecker' is illegal, its expectedResponseCode must be a 2xx status: {expected_response_code}"
                ));
            }
        }
        Ok(checker)
    }

    /// Whether checker JSON `raw` names the `MYSQL` type, valid or not (read before
    /// any other check, to refuse a caller who may not set one).
    pub fn declares_mysql(raw: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "MYSQL"))
            .unwrap_or(false)
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

    /// The checker as Nacos renders it, with the MYSQL password replaced by
    /// [`MASKED_PASSWORD`] (Nacos answers it in clear to any reader).
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing an enum of strings and numbers cannot fail.
        serde_json::to_value(self.masked()).unwrap_or(serde_json::Value::Null)
    }

    /// This checker with a MYSQL password replaced by [`MASKED_PASSWORD`].
    pub fn masked(&self) -> HealthChecker {
        match self {
            HealthChecker::Mysql { user, pwd, cmd } if !pwd.is_empty() => HealthChecker::Mysql {
                user: user.clone(),
                pwd: MASKED_PASSWORD.into(),
                cmd: cmd.clone(),
            },
            other => other.clone(),
        }
    }

    /// This checker as sent by a client that read it masked: a MYSQL password that is
    /// [`MASKED_PASSWORD`] stands for the one `current` holds (a form filled from a
    /// read and sent back does not overwrite the password with the mask).
    pub fn unmasked(self, current: &HealthChecker) -> HealthChecker {
        match (self, current) {
            (HealthChecker::Mysql { user, pwd, cmd }, HealthChecker::Mysql { pwd: kept, .. })
                if pwd == MASKED_PASSWORD =>
            {
                HealthChecker::Mysql {
                    user,
                    pwd: kept.clone(),
                    cmd,
                }
            }
            (checker, _) => checker,
        }
    }
}

/// Request headers an HTTP checker may set: content negotiation and caching, and
/// custom `X-` headers other than the ones that claim where a request came from. No
/// `Host`, `Authorization`, `Cookie`, `Content-Length`, `Connection`, `Transfer-Encoding`
/// or the like: a probe is a plain GET to the instance, not a way to send anything
/// else to it.
pub fn probe_header_allowed(name: &str) -> bool {
    const ALLOWED: [&str; 6] = [
        "accept",
        "accept-charset",
        "accept-language",
        "cache-control",
        "pragma",
        "user-agent",
    ];
    let name = name.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid
        && (ALLOWED.contains(&name.as_str())
            || (name.starts_with("x-") && !name.starts_with("x-forwarded-") && name != "x-real-ip"))
}

/// Nacos's header list `k1:v1|k2:v2` as pairs, every name allowed by
/// [`probe_header_allowed`] and every value printable ASCII. Errors name the field.
pub fn probe_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = http_headers(raw)?;
    for (name, value) in &pairs {
        if !probe_header_allowed(name) {
            return Err(format!(
                "Param 'healthChecker' is illegal, header {name:?} is not allowed (Accept, Accept-Charset, Accept-Language, Cache-Control, Pragma, User-Agent and X- headers are)"
            ));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!(
                "Param 'healthChecker' is illegal, the value of header {name:?} must be printable ASCII"
            ));
        }
    }
    Ok(pairs)
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMeta {
    /// The probe for its persistent instances. Default TCP (as Nacos). Serialized as
    /// its JSON text (its own serde form is internally tagged, JSON only).
    #[serde(with = "super::json_text")]
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
            r#"{"type":"HTTP","path":"/health","headers":"x-a:1|x-b:2","expectedResponseCode":204,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            http,
            HealthChecker::Http {
                path: "/health".into(),
                headers: "x-a:1|x-b:2".into(),
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
        assert_eq!(mysql.to_json()["pwd"], super::MASKED_PASSWORD);
        assert!(!format!("{mysql:?}").contains("\"p\""));
        let resent =
            HealthChecker::parse(r#"{"type":"MYSQL","user":"u2","pwd":"******","cmd":"select 2"}"#)
                .unwrap()
                .unmasked(&mysql);
        assert_eq!(
            resent,
            HealthChecker::Mysql {
                user: "u2".into(),
                pwd: "p".into(),
                cmd: "select 2".into()
            }
        );
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
        for header in [
            "Host:evil",
            "Authorization:Bearer x",
            "Cookie:a=b",
            "Content-Length:5",
            "Connection:keep-alive",
            "Transfer-Encoding:chunked",
            "X-Forwarded-For:1.2.3.4",
            "Accept:a|Host:b",
        ] {
            let raw = format!(r#"{{"type":"HTTP","headers":"{header}"}}"#);
            let e = HealthChecker::parse(&raw).unwrap_err();
            assert!(
                e.contains("healthChecker") && e.contains("not allowed"),
                "{header}: {e}"
            );
        }
        assert!(
            HealthChecker::parse(r#"{"type":"HTTP","headers":"Accept:text/plain|X-Probe:1"}"#)
                .is_ok()
        );
        assert!(HealthChecker::parse(r#"{"type":"HTTP","expectedResponseCode":404}"#).is_err());
        assert_eq!(
            http_headers("a:1| b : 2 |").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }
}

#[cfg(test)]
mod sql_tests {
    use super::read_only_statement;

    #[test]
    fn one_read_only_statement_passes() {
        for ok in [
            "SELECT 1",
            "select 1 from dual",
            "show global variables where variable_name='read_only'",
            "SHOW VARIABLES LIKE 'read_only'",
            "SELECT @@global.read_only",
            "SELECT count(*) FROM information_schema.tables",
            "SELECT a FROM t UNION SELECT b FROM u",
            "SHOW STATUS LIKE 'Uptime'",
        ] {
            assert_eq!(read_only_statement(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "INSERT INTO t VALUES (1)",
            "SELECT 1; INSERT INTO t VALUES (1)",
            "SELECT 1; SELECT 2",
            "DELETE FROM t",
            "UPDATE t SET a = 1",
            "DROP TABLE t",
            "SET GLOBAL read_only = 1",
            "SELECT 1 /*!; DROP TABLE t */",
            "SELECT 1 -- x",
            "SELECT 1 # x",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT SLEEP(10)",
            "SELECT IF(1, BENCHMARK(1000000, MD5('a')), 0)",
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT GET_LOCK('a', 10)",
            "CALL proc()",
            "GRANT ALL ON *.* TO x",
            "",
            "SELEC 1",
            "WITH x AS (SELECT 1) DELETE FROM t",
        ] {
            assert!(read_only_statement(bad).is_err(), "{bad}");
        }
    }
}
