//! Nacos's config export/import zip format (`ConfigController#exportConfig`,
//! `#exportConfigV2`, `#importAndPublishConfig`).
//!
//! * v1 (`export=true`): one entry `group/dataId` per config, plus `.meta.yml` with one
//!   line `group.dataId.app=appName` per config that has an app name, where the
//!   dataId's dots are written as `~` (lines end with `\r\n`).
//! * v2 (`exportV2=true`): the same entries plus `.metadata.yml`:
//!   `metadata:` followed by items `- dataId:`, `group:`, `type:`, `appName:`, `desc:`.
//!
//! Import reads either. Entries that are not `group/dataId` (or, with v2 metadata,
//! that the metadata does not list) are returned as unrecognized; `group/dataId`
//! entries that cannot be taken (larger than a config may be, not UTF-8) are returned
//! as failed, with the reason, so an import never drops a config without saying so.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;

use crate::storage::config::ConfigRow;

/// v1 metadata entry name.
pub const META_V1: &str = ".meta.yml";
/// v2 metadata entry name.
pub const META_V2: &str = ".metadata.yml";

/// One config read from an archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivedConfig {
    /// dataId.
    pub data_id: String,
    /// group.
    pub group: String,
    /// content.
    pub content: String,
    /// type, when the metadata (v2) or the dataId's extension (v1) gives one.
    pub config_type: Option<String>,
    /// appName from the metadata.
    pub app_name: Option<String>,
    /// desc from the metadata (v2).
    pub desc: Option<String>,
}

/// What an archive held.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    /// Configs, in entry order.
    pub configs: Vec<ArchivedConfig>,
    /// Entry names that are not configs.
    pub unrecognized: Vec<String>,
    /// Configs that could not be read: `(group, dataId, why)`.
    pub failed: Vec<(String, String, String)>,
}

/// Why an archive could not be read (Nacos's import result codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// 100004: not a zip, or an entry is not UTF-8.
    Parse(String),
    /// 100002: the metadata file is malformed.
    Metadata(String),
    /// 100005: no configs at all.
    Empty,
}

impl ArchiveError {
    /// Nacos's `ResultCodeEnum` code.
    pub fn code(&self) -> u32 {
        match self {
            ArchiveError::Parse(_) => 100004,
            ArchiveError::Metadata(_) => 100002,
            ArchiveError::Empty => 100005,
        }
    }

    /// The message.
    pub fn message(&self) -> String {
        match self {
            ArchiveError::Parse(m) => {
                format!("cannot read the import file (a Nacos export zip): {m}")
            }
            ArchiveError::Metadata(m) => format!("invalid metadata in the import file: {m}"),
            ArchiveError::Empty => "the import file holds no config".to_string(),
        }
    }
}

/// Writes configs as a zip; `v2` selects `.metadata.yml` instead of `.meta.yml`.
pub fn export(rows: &[ConfigRow], v2: bool) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut meta = String::new();
    if v2 {
        meta.push_str("metadata:\n");
    }
    for row in rows {
        let name = format!("{}/{}", row.key.group, row.key.data_id);
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(row.content.as_bytes())
            .map_err(|e| e.to_string())?;
        if v2 {
            meta.push_str(&format!(
                "- dataId: {}\n  group: {}\n",
                yaml_str(&row.key.data_id),
                yaml_str(&row.key.group)
            ));
            if let Some(t) = &row.config_type {
                meta.push_str(&format!("  type: {}\n", yaml_str(t)));
            }
            if let Some(a) = row.app_name.as_deref().filter(|a| !a.is_empty()) {
                meta.push_str(&format!("  appName: {}\n", yaml_str(a)));
            }
            if let Some(d) = row.desc.as_deref().filter(|d| !d.is_empty()) {
                meta.push_str(&format!("  desc: {}\n", yaml_str(d)));
            }
        } else if let Some(app) = row.app_name.as_deref().filter(|a| !a.is_empty()) {
            meta.push_str(&format!(
                "{}.{}.app={}\r\n",
                row.key.group,
                row.key.data_id.replace('.', "~"),
                app
            ));
        }
    }
    if v2 || !meta.is_empty() {
        zip.start_file(if v2 { META_V2 } else { META_V1 }, options)
            .map_err(|e| e.to_string())?;
        zip.write_all(meta.as_bytes()).map_err(|e| e.to_string())?;
    }
    let cursor = zip.finish().map_err(|e| e.to_string())?;
    Ok(cursor.into_inner())
}

/// A YAML scalar: plain when safe, else double-quoted with JSON escapes (valid YAML).
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(s, "true" | "false" | "null" | "~")
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

/// Reads a YAML scalar written by [`yaml_str`] or by Nacos (plain or quoted).
fn yaml_unquote(raw: &str) -> String {
    let t = raw.trim();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t).unwrap_or_else(|_| t.trim_matches('"').to_string())
    } else if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_string()
    }
}

/// Items of a v2 `.metadata.yml`: `(dataId, group, type, appName, desc)`.
type MetaItem = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parse_metadata_v2(text: &str) -> Result<Vec<MetaItem>, ArchiveError> {
    let mut items: Vec<MetaItem> = Vec::new();
    let mut saw_root = false;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed.trim().is_empty() || trimmed.trim_start().starts_with('#') {
            continue;
        }
        if trimmed == "metadata:" {
            saw_root = true;
            continue;
        }
        let body = trimmed.trim_start();
        let (new_item, field) = match body.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        if new_item {
            items.push(Default::default());
        }
        let Some(item) = items.last_mut() else {
            return Err(ArchiveError::Metadata(format!(
                "unexpected line {trimmed:?}"
            )));
        };
        let Some((k, v)) = field.split_once(':') else {
            return Err(ArchiveError::Metadata(format!(
                "unexpected line {trimmed:?}"
            )));
        };
        let v = yaml_unquote(v);
        match k.trim() {
            "dataId" => item.0 = v,
            "group" => item.1 = v,
            "type" => item.2 = Some(v),
            "appName" => item.3 = Some(v),
            "desc" => item.4 = Some(v),
            _ => {}
        }
    }
    if !saw_root || items.iter().any(|i| i.0.is_empty() || i.1.is_empty()) {
        return Err(ArchiveError::Metadata(
            "each item needs dataId and group".into(),
        ));
    }
    Ok(items)
}

/// Most bytes all entries of an import may inflate to together.
pub const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a v1 or v2 export. Each entry may inflate to at most `max_entry_bytes`, all
/// together (oversized entries counted as far as they were read) to
/// [`MAX_IMPORT_BYTES`]: a small zip cannot make the server inflate or hold gigabytes.
/// CPU-bound: call it off the async threads.
pub fn import(bytes: &[u8], max_entry_bytes: u64) -> Result<Archive, ArchiveError> {
    import_within(bytes, max_entry_bytes, MAX_IMPORT_BYTES)
}

fn import_within(
    bytes: &[u8],
    max_entry_bytes: u64,
    max_total: u64,
) -> Result<Archive, ArchiveError> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| ArchiveError::Parse(e.to_string()))?;
    // Each entry's text, or why it cannot be taken.
    let mut entries: Vec<(String, Result<String, String>)> = Vec::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| ArchiveError::Parse(e.to_string()))?;
        if file.is_dir() {
            continue;
        }
        let name = file.name().to_string();
        // The header's size may lie: read at most one byte past the cap.
        let cap = max_entry_bytes.min(max_total.saturating_sub(total));
        let mut bytes = Vec::new();
        (&mut file)
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ArchiveError::Parse(format!("{name}: {e}")))?;
        // What was inflated counts, taken or not: a zip of many oversized entries
        // cannot make the server inflate without end.
        total += bytes.len() as u64;
        if bytes.len() as u64 > cap {
            if cap < max_entry_bytes {
                return Err(ArchiveError::Parse(format!(
                    "the archive inflates past {max_total} bytes"
                )));
            }
            entries.push((name, Err(format!("larger than {max_entry_bytes} bytes"))));
            continue;
        }
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string());
        entries.push((name, text));
    }
    let meta = |wanted: &str| -> Result<Option<String>, ArchiveError> {
        match entries.iter().find(|(n, _)| n == wanted) {
            None => Ok(None),
            Some((_, Ok(text))) => Ok(Some(text.clone())),
            Some((_, Err(why))) => Err(ArchiveError::Metadata(format!("{wanted}: {why}"))),
        }
    };
    let meta_v2 = meta(META_V2)?;
    let meta_v1 = meta(META_V1)?;
    let mut archive = Archive::default();
    let v2_items = meta_v2.as_deref().map(parse_metadata_v2).transpose()?;
    let mut v1_apps = Vec::new();
    if let Some(text) = &meta_v1 {
        for line in text.lines() {
            if let Some((k, v)) = line.trim().split_once(".app=") {
                v1_apps.push((k.to_string(), v.to_string()));
            }
        }
    }
    for (name, content) in entries {
        if name == META_V1 || name == META_V2 {
            continue;
        }
        let parts: Vec<&str> = name.split('/').collect();
        let [group, data_id] = parts.as_slice() else {
            archive.unrecognized.push(name);
            continue;
        };
        let content = match content {
            Ok(text) => text,
            Err(why) => {
                archive
                    .failed
                    .push((group.to_string(), data_id.to_string(), why));
                continue;
            }
        };
        let mut cfg = ArchivedConfig {
            data_id: data_id.to_string(),
            group: group.to_string(),
            content,
            ..Default::default()
        };
        match &v2_items {
            Some(items) => {
                let Some(item) = items
                    .iter()
                    .find(|i| i.0 == cfg.data_id && i.1 == cfg.group)
                else {
                    archive.unrecognized.push(name);
                    continue;
                };
                cfg.config_type = item.2.clone();
                cfg.app_name = item.3.clone();
                cfg.desc = item.4.clone();
            }
            None => {
                let meta_key = format!("{}.{}", cfg.group, cfg.data_id.replace('.', "~"));
                cfg.app_name = v1_apps
                    .iter()
                    .find(|(k, _)| *k == meta_key)
                    .map(|(_, v)| v.clone());
                cfg.config_type = cfg.data_id.rsplit_once('.').map(|(_, ext)| ext.to_string());
            }
        }
        archive.configs.push(cfg);
    }
    if archive.configs.is_empty() && archive.failed.is_empty() {
        return Err(ArchiveError::Empty);
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ConfigKey;

    fn row(data_id: &str, app: Option<&str>) -> ConfigRow {
        ConfigRow {
            id: 1,
            key: ConfigKey::new(data_id, "G", ""),
            content: format!("content of {data_id}: 配置"),
            app_name: app.map(str::to_string),
            config_type: Some("yaml".into()),
            desc: Some("a: \"quoted\" desc".into()),
            encrypted_data_key: String::new(),
        }
    }

    #[test]
    fn v1_and_v2_round_trip() {
        let rows = [row("a.yaml", Some("shop")), row("b", None)];
        for v2 in [false, true] {
            let bytes = export(&rows, v2).expect("export");
            let archive = import(&bytes, 1 << 20).expect("import");
            assert_eq!(archive.configs.len(), 2);
            let a = &archive.configs[0];
            assert_eq!((a.data_id.as_str(), a.group.as_str()), ("a.yaml", "G"));
            assert_eq!(a.content, "content of a.yaml: 配置");
            assert_eq!(a.app_name.as_deref(), Some("shop"));
            assert_eq!(a.config_type.as_deref(), Some("yaml"));
            if v2 {
                assert_eq!(a.desc.as_deref(), Some("a: \"quoted\" desc"));
            }
            assert_eq!(archive.configs[1].app_name, None);
        }
    }

    #[test]
    fn bad_archives_are_refused() {
        assert!(matches!(
            import(b"not a zip", 1 << 20),
            Err(ArchiveError::Parse(_))
        ));
        let empty = export(&[], false).expect("export");
        assert_eq!(import(&empty, 1 << 20).err(), Some(ArchiveError::Empty));
    }

    #[test]
    fn an_entry_that_inflates_past_the_limit_is_refused() {
        // 8 MiB of zeros compress to a few kilobytes.
        let mut big = row("bomb", None);
        big.content = "0".repeat(8 * 1024 * 1024);
        let bytes = export(&[big], false).expect("export");
        assert!(bytes.len() < 100 * 1024, "{}", bytes.len());
        // Past one config's limit: that config fails, read no further.
        let archive = import(&bytes, 1024 * 1024).expect("import");
        assert!(archive.configs.is_empty());
        assert_eq!(archive.failed.len(), 1);
        assert!(archive.failed[0].2.contains("larger than"));
        // Past the whole archive's limit: nothing is imported.
        let many: Vec<ConfigRow> = (0..9)
            .map(|i| {
                let mut r = row(&format!("bomb{i}"), None);
                r.content = "0".repeat(8 * 1024 * 1024);
                r
            })
            .collect();
        let bytes = export(&many, false).expect("export");
        assert!(matches!(
            import(&bytes, 10 * 1024 * 1024),
            Err(ArchiveError::Parse(m)) if m.contains("inflates past")
        ));
        // Oversized entries count too, as far as they were read: 9 entries each read
        // to 1 MiB + 1 byte pass a total of 8 MiB.
        assert!(matches!(
            import_within(&bytes, 1024 * 1024, 8 * 1024 * 1024),
            Err(ArchiveError::Parse(m)) if m.contains("inflates past")
        ));
    }
}
