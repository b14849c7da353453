//! The config center's vocabulary: the key of a config (dataId, group, tenant), the
//! group key used on the wire, Nacos's MD5 and its name rules. No I/O.
//!
//! Invariant: a [`ConfigKey`] holds a valid dataId and group and a normalized tenant
//! (`""` for the public namespace, as Nacos `NamespaceUtil.processNamespaceParameter`).

use md5::{Digest, Md5};

/// The default group of a config (`Constants.DEFAULT_GROUP`).
pub const DEFAULT_CONFIG_GROUP: &str = "DEFAULT_GROUP";
/// Longest dataId, characters (Nacos 2.3+ `ParamCheckRule`).
pub const MAX_DATA_ID_LEN: usize = 256;
/// Longest group, characters.
pub const MAX_GROUP_LEN: usize = 128;
/// Longest tenant (namespace id), characters.
pub const MAX_TENANT_LEN: usize = 128;
/// Longest tag, characters (Nacos `ParamUtils.TAG_MAX_LEN`).
pub const MAX_TAG_LEN: usize = 16;
/// Config types Nacos accepts (`ConfigType`); anything else is stored as `text`.
pub const CONFIG_TYPES: [&str; 7] = ["properties", "xml", "json", "text", "html", "yaml", "unset"];

/// Identity of a config: `(dataId, group, tenant)`, case-sensitive as in Nacos.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigKey {
    /// The dataId.
    pub data_id: String,
    /// The group.
    pub group: String,
    /// The tenant (namespace id); `""` for the public namespace.
    pub tenant: String,
}

impl ConfigKey {
    /// Builds a key from parts that have been validated; the tenant is normalized.
    pub fn new(data_id: impl Into<String>, group: impl Into<String>, tenant: &str) -> Self {
        Self {
            data_id: data_id.into(),
            group: group.into(),
            tenant: normalize_tenant(tenant).to_string(),
        }
    }

    /// Nacos's group key, `dataId+group[+tenant]` with `%` and `+` escaped
    /// (`GroupKey2.getKey`); used by the listener queries.
    pub fn group_key(&self) -> String {
        let mut out = String::with_capacity(self.data_id.len() + self.group.len() + 8);
        for (i, part) in [&self.data_id, &self.group, &self.tenant]
            .iter()
            .enumerate()
        {
            if i == 2 && part.is_empty() {
                break;
            }
            if i > 0 {
                out.push('+');
            }
            for c in part.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    '+' => out.push_str("%2B"),
                    c => out.push(c),
                }
            }
        }
        out
    }
}

/// Maps Nacos's spellings of the public config namespace (blank, `public` in any case,
/// `null`) to `""`, as 2.x `NamespaceUtil.processNamespaceParameter`.
pub fn normalize_tenant(tenant: &str) -> &str {
    let t = tenant.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("public") || t == "null" {
        ""
    } else {
        t
    }
}

/// Lowercase hex MD5 of the content's UTF-8 bytes (Nacos `MD5Utils.md5Hex(content,
/// "UTF-8")`); a missing config has the MD5 `""`.
pub fn content_md5(content: &str) -> String {
    let digest = Md5::digest(content.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        out.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
    }
    out
}

/// Nacos `ParamUtils.isValid`: letters and digits (Unicode, as Java's
/// `Character.isLetterOrDigit`) and `_ - . :`.
pub fn is_valid_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Validates a dataId; the error is Nacos's message (`invalid dataId : X`).
pub fn validate_data_id(data_id: &str) -> Result<(), String> {
    if !is_valid_name(data_id) || data_id.chars().count() > MAX_DATA_ID_LEN {
        return Err(format!("invalid dataId : {data_id}"));
    }
    Ok(())
}

/// Validates a config group (`invalid group : X`).
pub fn validate_config_group(group: &str) -> Result<(), String> {
    if !is_valid_name(group) || group.chars().count() > MAX_GROUP_LEN {
        return Err(format!("invalid group : {group}"));
    }
    Ok(())
}

/// Validates a tenant that is not the public one (`invalid tenant`).
pub fn validate_tenant(tenant: &str) -> Result<(), String> {
    if tenant.is_empty() {
        return Ok(());
    }
    if tenant.chars().count() > MAX_TENANT_LEN {
        return Err(format!("too long tenant, over {MAX_TENANT_LEN}"));
    }
    if !is_valid_name(tenant) {
        return Err(format!("invalid tenant : {tenant}"));
    }
    Ok(())
}

/// Validates a tag (`invalid tag : X`, `too long tag, over 16`).
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.chars().count() > MAX_TAG_LEN {
        return Err(format!("too long tag, over {MAX_TAG_LEN}"));
    }
    if !is_valid_name(tag) {
        return Err(format!("invalid tag : {tag}"));
    }
    Ok(())
}

/// The stored type for a requested one: a known type as given, anything else `text`.
pub fn normalize_type(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|t| CONFIG_TYPES.iter().find(|k| k.eq_ignore_ascii_case(t)))
        .copied()
        .unwrap_or("text")
}

/// The `Content-Type` of a GET answer for a config type, as Nacos `ConfigServletInner`.
pub fn content_type_of(config_type: &str) -> &'static str {
    match config_type {
        "json" => "application/json;charset=UTF-8",
        "xml" => "application/xml;charset=UTF-8",
        "html" => "text/html;charset=UTF-8",
        _ => "text/plain;charset=UTF-8",
    }
}

// Records of the config center's tables, shared by the store and the front doors.

/// A custom namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRow {
    /// The namespace id (`tenant_id`).
    pub id: String,
    /// Display name (`tenant_name`).
    pub name: String,
    /// Description (`tenant_desc`).
    pub desc: Option<String>,
}

/// A formal publish, validated by the caller.
#[derive(Clone, Debug, Default)]
pub struct PublishRecord {
    /// Identity.
    pub key: ConfigKey,
    /// New content.
    pub content: String,
    /// Its MD5.
    pub md5: String,
    /// Type (already normalized).
    pub config_type: String,
    /// App name; `None` keeps the stored one on update.
    pub app_name: Option<String>,
    /// `src_user`.
    pub src_user: Option<String>,
    /// `src_ip`.
    pub src_ip: String,
    /// `c_desc`.
    pub desc: Option<String>,
    /// `c_use`.
    pub usage: Option<String>,
    /// `effect`.
    pub effect: Option<String>,
    /// `c_schema`.
    pub schema: Option<String>,
    /// New tags; `None` keeps the stored ones.
    pub config_tags: Option<Vec<String>>,
    /// `encrypted_data_key`.
    pub encrypted_data_key: String,
    /// Compare-and-set (`casMd5` header, Nacos 2.x): publish only if the stored
    /// version's MD5 is this one (or it has none); a missing config is created
    /// whatever it says.
    pub cas_md5: Option<String>,
}

/// A `his_config_info` row.
#[derive(Clone, Debug)]
pub struct HistoryRow {
    /// `nid`, the history id.
    pub nid: i64,
    /// `id`, the config id.
    pub id: i64,
    /// Identity.
    pub key: ConfigKey,
    /// App name.
    pub app_name: Option<String>,
    /// Content (only in detail queries).
    pub content: Option<String>,
    /// MD5 (only in detail queries).
    pub md5: Option<String>,
    /// Source IP.
    pub src_ip: Option<String>,
    /// Source user.
    pub src_user: Option<String>,
    /// `I`, `U` or `D`.
    pub op_type: String,
    /// Creation, ms since the epoch.
    pub created_ms: i64,
    /// Modification, ms since the epoch.
    pub modified_ms: i64,
    /// `encrypted_data_key`.
    pub encrypted_data_key: String,
}

/// Filter of a config search.
#[derive(Clone, Debug, Default)]
pub struct SearchFilter {
    /// `LIKE` patterns (`*` → `%`) instead of equality.
    pub blur: bool,
    /// dataId; empty = any.
    pub data_id: String,
    /// group; empty = any.
    pub group: String,
    /// tenant (exact).
    pub tenant: String,
    /// appName; empty = any.
    pub app_name: String,
    /// Any of these tags; empty = any.
    pub tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_nacos_for_ascii_and_non_ascii() {
        assert_eq!(content_md5(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(content_md5("a=1"), "3872c9ae3f427af0be0ead09d07ae2cf");
        // UTF-8 bytes, not UTF-16 or Latin-1 (Python: hashlib.md5("配置".encode())).
        assert_eq!(content_md5("配置"), "224e2ccda861c2514faa683b3683c361");
    }

    #[test]
    fn names_follow_nacos_rules() {
        assert!(validate_data_id("app.yaml").is_ok());
        assert!(validate_data_id("配置:a_b-c").is_ok());
        assert!(validate_data_id("a b").is_err());
        assert!(validate_data_id("a/b").is_err());
        assert!(validate_data_id(&"x".repeat(257)).is_err());
        assert!(validate_config_group("").is_err());
        assert_eq!(normalize_tenant("PUBLIC"), "");
        assert_eq!(normalize_tenant(" dev "), "dev");
        assert_eq!(normalize_type(Some("YAML")), "yaml");
        assert_eq!(normalize_type(Some("toml")), "text");
    }

    #[test]
    fn group_key_escapes_percent_and_plus() {
        let k = ConfigKey::new("a+b", "g%", "");
        assert_eq!(k.group_key(), "a%2Bb+g%25");
        let k = ConfigKey::new("a", "g", "dev");
        assert_eq!(k.group_key(), "a+g+dev");
    }
}
