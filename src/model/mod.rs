//! Shared vocabulary of the naming domain: service keys, instances and the Nacos
//! defaults and name rules they follow. No I/O lives here, and nothing here knows about
//! HTTP, DNS or storage.
//!
//! Invariants: a [`ServiceKey`] always holds a non-empty namespace, group and service
//! name; an [`Instance`] always has a valid host (IP literal or host name), a port and a
//! weight in `0.0..=10000.0`.

pub mod config;
pub mod health;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use health::{ClusterMeta, HealthChecker};

/// Nacos's default naming namespace id (`Constants.DEFAULT_NAMESPACE_ID`).
pub const DEFAULT_NAMESPACE: &str = "public";
/// Nacos's default group (`Constants.DEFAULT_GROUP`).
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";
/// Nacos's default cluster name.
pub const DEFAULT_CLUSTER: &str = "DEFAULT";
/// Separator of a grouped service name, `group@@service` (`SERVICE_INFO_SPLITER`).
pub const GROUP_SEPARATOR: &str = "@@";

/// Metadata key: client beat interval in milliseconds (default 5000).
pub const META_BEAT_INTERVAL: &str = "preserved.heart.beat.interval";
/// Metadata key: milliseconds without a beat before an instance is unhealthy (default 15000).
pub const META_BEAT_TIMEOUT: &str = "preserved.heart.beat.timeout";
/// Metadata key: milliseconds without a beat before an instance is removed (default 30000).
pub const META_DELETE_TIMEOUT: &str = "preserved.ip.delete.timeout";
/// Metadata key: instance id generator, `simple` (the default) or `snowflake`.
pub const META_ID_GENERATOR: &str = "preserved.instance.id.generator";
/// The `snowflake` instance id generator (Nacos `SnowFlakeInstanceIdGenerator`).
pub const SNOWFLAKE_GENERATOR: &str = "snowflake";

/// Default client beat interval, milliseconds.
pub const DEFAULT_BEAT_INTERVAL_MS: u64 = 5_000;
/// Default beat timeout (unhealthy after), milliseconds.
pub const DEFAULT_BEAT_TIMEOUT_MS: u64 = 15_000;
/// Default delete timeout (removed after), milliseconds.
pub const DEFAULT_DELETE_TIMEOUT_MS: u64 = 30_000;

/// Largest weight Nacos accepts (`Instance#validate`).
pub const MAX_WEIGHT: f64 = 10_000.0;

/// The identity of a service: namespace id, group and plain service name.
///
/// Nacos names are case-sensitive; so is this key. DNS lookups fold case separately
/// (see [`ServiceKey::folded`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Namespace id; `public` for the default namespace.
    pub namespace: String,
    /// Group name, `DEFAULT_GROUP` by default.
    pub group: String,
    /// Plain service name (without the group prefix).
    pub service: String,
}

impl ServiceKey {
    /// Builds a key from its three parts, as given.
    pub fn new(
        namespace: impl Into<String>,
        group: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            group: group.into(),
            service: service.into(),
        }
    }

    /// The grouped name `group@@service`, as Nacos puts it in `name` and `serviceName`.
    pub fn grouped_name(&self) -> String {
        format!("{}{GROUP_SEPARATOR}{}", self.group, self.service)
    }

    /// The ASCII-case-folded form used to find a service from a DNS name.
    pub fn folded(&self) -> FoldedKey {
        FoldedKey::new(&self.namespace, &self.group, &self.service)
    }

    /// The labels of this service's DNS name below the zone, folded to lower case and
    /// left to right (service labels, group, and `_<namespace>` unless `public`);
    /// `None` when it has no DNS name ([`Self::dns_unreachable`]).
    pub fn dns_labels(&self) -> Option<Vec<String>> {
        if self.dns_unreachable().is_some() {
            return None;
        }
        let mut labels: Vec<String> = self
            .service
            .split('.')
            .chain([self.group.as_str()])
            .map(str::to_ascii_lowercase)
            .collect();
        if self.namespace != DEFAULT_NAMESPACE {
            labels.push(format!("_{}", self.namespace.to_ascii_lowercase()));
        }
        Some(labels)
    }

    /// Why this service has no DNS name, if it has none (see `dns::zone` for the
    /// scheme). Its service name is the leftmost labels (a dot splits labels, any
    /// other byte stays), its group one label and its namespace, unless `public`, one
    /// label written `_<namespace>`. So a name cannot be in DNS when its group or
    /// namespace holds a dot, when a public service's group starts with `_` (it would
    /// read as a namespace), or when a label is empty or longer than 63 bytes.
    pub fn dns_unreachable(&self) -> Option<String> {
        if self.group.is_empty() || self.group.contains('.') {
            return Some(format!("its group {:?} is not one DNS label", self.group));
        }
        if self.namespace == DEFAULT_NAMESPACE {
            if self.group.starts_with('_') {
                return Some(format!(
                    "its group {:?} starts with '_', which marks a namespace in DNS names",
                    self.group
                ));
            }
        } else if self.namespace.is_empty() || self.namespace.contains('.') {
            return Some(format!(
                "its namespace {:?} is not one DNS label",
                self.namespace
            ));
        }
        let labels = self.service.split('.');
        if let Some(bad) = labels.clone().find(|l| l.is_empty() || l.len() > 63) {
            return Some(format!(
                "its name has a DNS label {bad:?} that is empty or longer than 63 bytes"
            ));
        }
        let total = self.service.len() + 1 + self.group.len() + 1 + self.namespace.len() + 2;
        if total > 240 {
            return Some(format!("its DNS name would be {total} bytes long"));
        }
        None
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@@{}@{}", self.group, self.service, self.namespace)
    }
}

/// A service key with ASCII letters folded to lower case, the way DNS compares names
/// (RFC 4343).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FoldedKey(String);

impl FoldedKey {
    /// Folds the three parts of a service key.
    pub fn new(namespace: &str, group: &str, service: &str) -> Self {
        let mut s = String::with_capacity(namespace.len() + group.len() + service.len() + 2);
        s.push_str(namespace);
        s.push('\u{0}');
        s.push_str(group);
        s.push('\u{0}');
        s.push_str(service);
        s.make_ascii_lowercase();
        Self(s)
    }
}

/// Splits a Nacos `serviceName` parameter into `(group, service)` as Nacos's
/// `ServiceNameFilter` and `NamingUtils` do: a name that already holds `@@` keeps its own
/// group and the `groupName` parameter is ignored; otherwise `group` (or `DEFAULT_GROUP`)
/// applies.
///
/// Errors with the message Nacos gives when the grouped form is malformed.
pub fn split_service_name(
    service_name: &str,
    group: Option<&str>,
) -> Result<(String, String), String> {
    match service_name.split_once(GROUP_SEPARATOR) {
        Some((g, s)) => {
            if g.is_empty() {
                return Err(format!(
                    "Param 'serviceName' is illegal, groupName can't be empty: {service_name}"
                ));
            }
            if s.is_empty() || s.contains(GROUP_SEPARATOR) {
                return Err(format!(
                    "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName': {service_name}"
                ));
            }
            Ok((g.to_string(), s.to_string()))
        }
        None => Ok((
            group.unwrap_or(DEFAULT_GROUP).to_string(),
            service_name.to_string(),
        )),
    }
}

/// Checks a plain service name the way Nacos 2.3's parameter checker does: at most 512
/// characters, no whitespace or control characters, not starting with `@`.
pub fn validate_service_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Param 'serviceName' is required.".into());
    }
    if name.chars().count() > 512 {
        return Err("Param 'serviceName' is illegal, it is longer than 512 characters".into());
    }
    if name.starts_with('@') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "Param 'serviceName' is illegal, it must not start with '@' or contain whitespace: {name}"
        ));
    }
    Ok(())
}

/// True when `value` has 1 to `max` characters, each an ASCII letter or digit or one of
/// `extra`.
fn is_token(value: &str, max: usize, extra: &[char]) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Checks a group name: at most 128 characters of `[A-Za-z0-9-_:.]` (Nacos 2.3 checker).
pub fn validate_group(group: &str) -> Result<(), String> {
    if is_token(group, 128, &['-', '_', ':', '.']) {
        return Ok(());
    }
    Err(format!(
        "Param 'groupName' is illegal, it must be 1-128 characters of 0-9a-zA-Z-_:. : {group}"
    ))
}

/// Checks a namespace id: at most 64 characters of `[\w-]` (Nacos 2.3 checker).
pub fn validate_namespace(namespace: &str) -> Result<(), String> {
    if is_token(namespace, 64, &['-', '_']) {
        return Ok(());
    }
    Err(format!(
        "Param 'namespaceId' is illegal, it must be 1-64 characters of 0-9a-zA-Z-_ : {namespace}"
    ))
}

/// Checks a cluster name against Nacos 2.x's `^[0-9a-zA-Z-]+$`
/// (`NamingUtils#checkInstanceIsLegal`), at most 64 characters.
pub fn validate_cluster(cluster: &str) -> Result<(), String> {
    if is_token(cluster, 64, &['-']) {
        return Ok(());
    }
    Err(format!(
        "Instance 'clusterName' should be characters with only 0-9a-zA-Z-. (current: {cluster})"
    ))
}

/// The host of an instance: an IP address (answered as A/AAAA in DNS) or a host name
/// (Nacos accepts both; DNS answers host names only as SRV targets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A DNS host name (letters, digits, `-` and `.`, labels of at most 63 characters).
    Name(String),
}

impl Host {
    /// Parses the `ip` parameter. Errors with a message that names the field.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let looks_numeric = raw.chars().all(|c| c.is_ascii_digit() || c == '.');
        let valid_name = !raw.is_empty()
            && raw.len() <= 253
            && !looks_numeric
            && raw.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if valid_name {
            Ok(Host::Name(raw.to_string()))
        } else {
            Err(format!(
                "Param 'ip' is illegal, it must be an IP address or a host name: {raw}"
            ))
        }
    }

    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

/// One registered instance of a service, with Nacos's field names.
///
/// Immutable once built: the registry replaces the whole value on every change, so
/// readers can share it through an `Arc`. Kept compact (about 100 bytes plus the ip
/// text) because a node holds hundreds of thousands: the instance id is derived
/// ([`Instance::instance_id`]), and `ip` and `cluster` are shared with the registry's key.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The `ip` parameter as registered (IP literal or host name).
    pub ip: Arc<str>,
    /// The address when `ip` is an IP literal (answered as A/AAAA); `None` for a host
    /// name (answered only as an SRV target).
    pub addr: Option<IpAddr>,
    /// Port, 0..=65535.
    pub port: u16,
    /// Weight in `0.0..=10000.0`; 0 takes the instance out of DNS answers.
    pub weight: f64,
    /// Health as last decided by beats (ephemeral) or probes (persistent).
    pub healthy: bool,
    /// A disabled instance is never returned to clients.
    pub enabled: bool,
    /// Ephemeral instances live by client beats; persistent ones by probes.
    pub ephemeral: bool,
    /// Cluster name, `DEFAULT` by default.
    pub cluster: Arc<str>,
    /// Free-form metadata; the `preserved.*` keys tune beat timeouts.
    pub metadata: BTreeMap<String, String>,
    /// The id a `snowflake` generator gave it at registration
    /// (`<id>#<cluster>#<group>@@<service>`); `None` for the derived `simple` id.
    pub id: Option<Arc<str>>,
}

impl Instance {
    /// Nacos's `simple` instance id: `ip#port#cluster#group@@service`.
    pub fn simple_id(ip: &str, port: u16, cluster: &str, key: &ServiceKey) -> String {
        format!(
            "{ip}#{port}#{cluster}#{}{GROUP_SEPARATOR}{}",
            key.group, key.service
        )
    }

    /// This instance's id inside service `key`: the one its `snowflake` generator gave
    /// it, else the `simple` one, e.g. `10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@stock`.
    pub fn instance_id(&self, key: &ServiceKey) -> String {
        match &self.id {
            Some(id) => id.to_string(),
            None => Self::simple_id(&self.ip, self.port, &self.cluster, key),
        }
    }

    /// Whether its metadata asks for `snowflake` ids.
    pub fn wants_snowflake_id(&self) -> bool {
        self.metadata.get(META_ID_GENERATOR).map(String::as_str) == Some(SNOWFLAKE_GENERATOR)
    }

    fn metadata_ms(&self, key: &str, default: u64) -> u64 {
        metadata_millis(&self.metadata, key).unwrap_or(default)
    }

    /// Beat interval in milliseconds (`preserved.heart.beat.interval`, default 5000).
    pub fn beat_interval_ms(&self) -> u64 {
        self.metadata_ms(META_BEAT_INTERVAL, DEFAULT_BEAT_INTERVAL_MS)
    }

    /// Milliseconds without a beat before the instance turns unhealthy
    /// (`preserved.heart.beat.timeout`, default 15000).
    pub fn beat_timeout_ms(&self) -> u64 {
        self.metadata_ms(META_BEAT_TIMEOUT, DEFAULT_BEAT_TIMEOUT_MS)
    }

    /// Milliseconds without a beat before the instance is removed
    /// (`preserved.ip.delete.timeout`, default 30000).
    pub fn delete_timeout_ms(&self) -> u64 {
        self.metadata_ms(META_DELETE_TIMEOUT, DEFAULT_DELETE_TIMEOUT_MS)
    }

    /// The identity of this instance inside its service (shares the `Arc`).
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            ip: self.ip.clone(),
            port: self.port,
        }
    }
}

/// Reads a `preserved.*` timing value: it counts only when it is all digits, as in Nacos.
pub fn metadata_millis(metadata: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    metadata
        .get(key)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
}

/// Checks the `preserved.*` metadata as Nacos 2.x does
/// (`NamingUtils#checkInstanceIsLegal`, `Instance#getMetaDataByKeyWithDefault`):
/// * a timing value of digits must fit a Java `long` (Nacos's `Long.parseLong` throws,
///   and Java clients cannot read the instance list with such a number in it);
/// * the beat interval must not exceed the beat timeout or the delete timeout;
/// * the id generator, when given, is `simple` or `snowflake` (Nacos answers 500 for
///   another one; this is the client's mistake, so a 400).
///
/// Errors name the key.
pub fn validate_beat_metadata(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    for key in [META_BEAT_INTERVAL, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT] {
        if let Some(value) = metadata.get(key)
            && !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<i64>().is_err()
        {
            return Err(format!(
                "Param 'metadata' is illegal, {key} is out of range (at most {}): For input string: \"{value}\"",
                i64::MAX
            ));
        }
    }
    if let Some(generator) = metadata.get(META_ID_GENERATOR)
        && !generator.is_empty()
        && generator != "simple"
        && generator != SNOWFLAKE_GENERATOR
    {
        return Err(format!(
            "Param 'metadata' is illegal, {META_ID_GENERATOR} must be simple or snowflake: {generator}"
        ));
    }
    let interval =
        metadata_millis(metadata, META_BEAT_INTERVAL).unwrap_or(DEFAULT_BEAT_INTERVAL_MS);
    let timeout = metadata_millis(metadata, META_BEAT_TIMEOUT).unwrap_or(DEFAULT_BEAT_TIMEOUT_MS);
    let delete =
        metadata_millis(metadata, META_DELETE_TIMEOUT).unwrap_or(DEFAULT_DELETE_TIMEOUT_MS);
    if interval > timeout || interval > delete {
        return Err("Instance 'heart beat interval' must less than 'heart beat timeout' and 'ip delete timeout'.".into());
    }
    Ok(())
}

/// The identity of an instance inside a service: its client's `ip:port`, as Nacos
/// 2.x keys it (one instance per client per service, whatever its cluster).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    /// The `ip` parameter as registered.
    pub ip: Arc<str>,
    /// Port.
    pub port: u16,
}

impl InstanceKey {
    /// A key from borrowed parts.
    pub fn new(ip: &str, port: u16) -> Self {
        Self {
            ip: ip.into(),
            port,
        }
    }
}

/// The owner of ephemeral instances (Nacos 2.x `Client`): an HTTP (1.x) client is
/// `ip:port#true`, as Nacos's `IpPortBasedClient`; a gRPC connection will be its
/// connection id. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// The client of an HTTP registration from `ip` (the `ip` parameter) and `port`.
    pub fn http(ip: &str, port: u16) -> Self {
        Self(Arc::from(format!("{ip}:{port}#true")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Service-level settings, as Nacos's `ServiceMetadata`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceMeta {
    /// Share of healthy instances at or under which every instance is returned
    /// (0.0..=1.0; 0 means off for DNS, see `naming::selection`).
    pub protect_threshold: f32,
    /// Free-form service metadata.
    pub metadata: BTreeMap<String, String>,
    /// The selector JSON as given (`{"type":"none"}` by default); stored, not evaluated.
    pub selector: serde_json::Value,
    /// True once the service was created or updated through the service API; such a
    /// service stays when it has no instances.
    pub explicit: bool,
    /// The kind of instance the service holds: ephemeral (beats) or persistent (probes).
    /// Nacos 2.x makes this a property of the service, set when the service is created
    /// (by its first registration, or persistent by `POST /nacos/v1/ns/service`), and
    /// refuses instances of the other kind.
    pub ephemeral: bool,
    /// Settings of the clusters that have any (health checker, check port), by cluster
    /// name; a cluster without an entry uses [`ClusterMeta::default`] (TCP).
    pub clusters: BTreeMap<String, Arc<ClusterMeta>>,
}

impl ServiceMeta {
    /// The settings of cluster `name` (the defaults when none were set).
    pub fn cluster(&self, name: &str) -> Arc<ClusterMeta> {
        self.clusters.get(name).cloned().unwrap_or_default()
    }
}

impl Default for ServiceMeta {
    fn default() -> Self {
        Self {
            protect_threshold: 0.0,
            metadata: BTreeMap::new(),
            selector: serde_json::json!({"type": "none"}),
            explicit: false,
            ephemeral: true,
            clusters: BTreeMap::new(),
        }
    }
}

/// Most characters of keys and values, all together, in one metadata map (Nacos 2.3's
/// parameter checker, `maxMetadataLength`).
pub const MAX_METADATA_CHARS: usize = 1024;

/// Checks the size of a metadata map against [`MAX_METADATA_CHARS`]. Errors name the
/// field.
pub fn check_metadata_size(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    let chars: usize = metadata
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    if chars > MAX_METADATA_CHARS {
        return Err(format!(
            "Param 'metadata' is too long: {chars} characters of keys and values, at most {MAX_METADATA_CHARS}"
        ));
    }
    Ok(())
}

/// Parses Nacos's `metadata` parameter: a JSON object of strings (numbers and booleans
/// are taken as their text), or the fallback `k1=v1,k2=v2`, of at most
/// [`MAX_METADATA_CHARS`] characters of keys and values. Errors name the field.
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Whatever its form, a text this long holds more than the limit: no need to parse.
    if raw.len() > 8 * MAX_METADATA_CHARS {
        return Err(format!(
            "Param 'metadata' is too long: at most {MAX_METADATA_CHARS} characters of keys and values"
        ));
    }
    let parsed = parse_metadata_map(raw)?;
    check_metadata_size(&parsed)?;
    Ok(parsed)
}

fn parse_metadata_map(raw: &str) -> Result<BTreeMap<String, String>, String> {
    if raw.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| format!("Param 'metadata' is not valid JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("Param 'metadata' must be a JSON object".into());
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => {
                    return Err(format!(
                        "Param 'metadata' values must be strings, key '{k}' is not"
                    ));
                }
            };
            out.insert(k, text);
        }
        return Ok(out);
    }
    let mut out = BTreeMap::new();
    for pair in raw.split(',') {
        let mut parts = pair.split('=');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(v), None) => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => return Err(format!("metadata format incorrect:{raw}")),
        }
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch, the clock of beats, tokens and `lastRefTime`.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A page request: 1-based page number and page size, both at least 1.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// Page number, from 1.
    pub number: u32,
    /// Items per page.
    pub size: u32,
}

impl PageRequest {
    pub(crate) fn offset(&self) -> i64 {
        i64::from(self.number.saturating_sub(1)) * i64::from(self.size)
    }

    pub(crate) fn limit(&self) -> i64 {
        i64::from(self.size)
    }
}

/// One page of results and the total count (Nacos `Page`).
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// Matching rows in all pages.
    pub total: i64,
    /// The request.
    pub request: PageRequest,
    /// This page's rows.
    pub items: Vec<T>,
}

/// A `permissions` row: `role` may do `action` (`r`, `w` or `rw`) on `resource`
/// (`<namespace>:<group>:<type>/<name>`, `*` as a wildcard).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PermissionRow {
    /// The role.
    pub role: String,
    /// The resource pattern.
    pub resource: String,
    /// `r`, `w` or `rw`.
    pub action: String,
}

/// Serde for a value whose own serde form is JSON-only (internally tagged, or
/// `serde_json::Value`): it travels as its JSON text.
pub mod json_text {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `value` as its JSON text.
    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    /// Reads a value from its JSON text.
    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_service_name_keeps_its_own_group() {
        assert_eq!(
            split_service_name("G1@@svc", Some("ignored")).unwrap(),
            ("G1".to_string(), "svc".to_string())
        );
        assert_eq!(
            split_service_name("svc", None).unwrap(),
            (DEFAULT_GROUP.to_string(), "svc".to_string())
        );
        assert!(split_service_name("@@svc", None).is_err());
        assert!(split_service_name("g@@", None).is_err());
    }

    #[test]
    fn metadata_accepts_json_and_pairs() {
        let m = parse_metadata(r#"{"a":"1","b":2}"#).unwrap();
        assert_eq!(m["b"], "2");
        let m = parse_metadata("a=1,b=2").unwrap();
        assert_eq!(m["a"], "1");
        assert!(parse_metadata("a=1,b").is_err());
        assert!(parse_metadata("{bad").is_err());
    }

    #[test]
    fn host_accepts_ips_and_names_only() {
        assert!(matches!(Host::parse("10.0.0.1"), Ok(Host::Ip(_))));
        assert!(matches!(Host::parse("::1"), Ok(Host::Ip(_))));
        assert!(matches!(Host::parse("db-1.example"), Ok(Host::Name(_))));
        assert!(Host::parse("10.0.0.999").is_err());
        assert!(Host::parse("a b").is_err());
        assert!(Host::parse("").is_err());
    }

    #[test]
    fn preserved_timings_must_be_digits() {
        let mut m = BTreeMap::new();
        m.insert(META_BEAT_TIMEOUT.to_string(), "1500".to_string());
        m.insert(META_DELETE_TIMEOUT.to_string(), "x".to_string());
        assert_eq!(metadata_millis(&m, META_BEAT_TIMEOUT), Some(1500));
        assert_eq!(metadata_millis(&m, META_DELETE_TIMEOUT), None);
        assert!(
            validate_beat_metadata(&m).is_err(),
            "5000 interval > 1500 timeout"
        );
        let mut big = BTreeMap::new();
        big.insert(
            META_DELETE_TIMEOUT.to_string(),
            "9223372036854775808".to_string(),
        );
        let e = validate_beat_metadata(&big).unwrap_err();
        assert!(e.contains(META_DELETE_TIMEOUT), "{e}");
        big.insert(
            META_DELETE_TIMEOUT.to_string(),
            "9223372036854775807".to_string(),
        );
        assert!(validate_beat_metadata(&big).is_ok());
        big.insert(META_ID_GENERATOR.to_string(), "uuid".to_string());
        assert!(
            validate_beat_metadata(&big)
                .unwrap_err()
                .contains(META_ID_GENERATOR)
        );
        assert!(validate_cluster("A-1").is_ok());
        assert!(validate_cluster("a_b").is_err() && validate_cluster("a.b").is_err());
    }
}
