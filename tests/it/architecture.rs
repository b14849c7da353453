//! The dependency rule of DESIGN §6, checked on the source: each module uses only
//! modules of lower levels, `naming` and `config` never import HTTP, DNS or Raft
//! types, and `dns` never reaches SQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// DESIGN §6, top to bottom; a module may use modules of lower levels (a larger
/// number) and none above it or beside it. DESIGN's level of front doors and drivers
/// is split in two: the front doors (DNS, HTTP, gRPC) use the drivers (the HTTP list
/// registers UDP push subscribers and shows probe statistics), never the other way.
/// `net` (connection limits shared by the front doors) sits with the vocabulary;
/// `fuzz` (fuzz targets) drives the front doors like `app`.
const LEVELS: &[&[&str]] = &[
    &["app", "fuzz"],
    &["dns", "http", "grpc"],
    &["health", "push"],
    &["naming", "config"],
    &["auth"],
    &["replication"],
    &["cluster"],
    &["storage"],
    &["model", "settings", "telemetry", "net"],
];

/// Edges that break the rule today, each with the reason and the change that removes
/// it. Nothing may be added here without such a note.
const KNOWN_EXCEPTIONS: &[(&str, &str)] = &[
    // Settings validation checks `auth.token_key` with the token module's own rules,
    // so that a bad key is refused before anything starts.
    ("settings", "auth"),
];

fn level(module: &str) -> Option<usize> {
    LEVELS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/dns/zone.rs` → `dns`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under src");
    let first = rel.components().next().expect("a path component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The modules a file names as `crate::<module>`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in macros and `crate::` inside longer paths are not ours.
        let before = text[..at].chars().next_back();
        if !name.is_empty()
            && !before.is_some_and(|c| c == '$' || c.is_ascii_alphanumeric() || c == '_')
        {
            used.insert(name);
        }
    }
    used
}

#[test]
fn modules_use_only_the_levels_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(from) = level(&module) else {
            unplaced.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for used in crate_uses(&text) {
            if used == module {
                continue;
            }
            let Some(to) = level(&used) else {
                unplaced.insert(used);
                continue;
            };
            let allowed = to > from || KNOWN_EXCEPTIONS.contains(&(module.as_str(), used.as_str()));
            if !allowed {
                broken.push(format!("{} uses crate::{used}", file.display()));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from LEVELS: {unplaced:?}"
    );
    assert!(
        broken.is_empty(),
        "dependency rule broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn use_cases_import_no_transport_and_dns_no_sql() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden: &[(&str, &[&str])] = &[
        (
            "naming",
            &["axum::", "hickory_", "openraft::", "sqlx::", "tonic::"],
        ),
        ("config", &["axum::", "hickory_", "openraft::", "tonic::"]),
        ("dns", &["sqlx::", "crate::storage", "crate::config::"]),
    ];
    let mut broken = Vec::new();
    for (module, names) in forbidden {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let single = src.join(format!("{module}.rs"));
        if single.is_file() {
            files.push(single);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for name in *names {
                if text.contains(name) {
                    broken.push(format!("{} names {name}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_crate_paths_only() {
    let used =
        crate_uses("use crate::naming::x; $crate::dns::y; my_crate::http::z; (crate::model::a)");
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["model".to_string(), "naming".to_string()]
    );
}
