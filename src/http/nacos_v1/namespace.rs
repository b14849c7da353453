//! Namespaces API v1 (`/nacos/v1/console/namespaces`), as Nacos
//! `NamespaceController`: the public namespace (id `""`) is always listed first and
//! cannot be created, changed or deleted; a custom namespace lives in `tenant_info`.
//! Creation answers `false` (not an error) for a bad or taken id, as Nacos.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::AppState;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::params::Params;
use super::config::{json_ok, rest_result};
use crate::model::config::NamespaceRow;

/// Configs a namespace may hold (Nacos's default quota).
const DEFAULT_QUOTA: u32 = 200;
/// Longest namespace id.
const MAX_NAMESPACE_ID_LEN: usize = 128;

fn item(id: &str, name: &str, desc: Option<&str>, count: usize, kind: u8) -> Value {
    json!({
        "namespace": id, "namespaceShowName": name, "namespaceDesc": desc,
        "quota": DEFAULT_QUOTA, "configCount": count, "type": kind,
    })
}

/// A namespace id as Nacos accepts it: `^[\w-]+$`, at most 128 characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NAMESPACE_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A random namespace id in UUID v4 form, as Nacos `UUID.randomUUID()`.
fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let variant = ["8", "9", "a", "b"][usize::from(b[8] & 3)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        variant,
        &hex[17..20],
        &hex[20..32]
    )
}

/// `GET`: the list; `show=all&namespaceId=` one namespace;
/// `checkNamespaceIdExist=true&customNamespaceId=` whether an id is taken.
///
/// An admin sees every namespace; another user only those a grant of theirs names (a
/// namespace they may not see is answered as one that does not exist). Nacos answers
/// the whole list to anyone.
pub async fn get_namespaces(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<Response, ApiError> {
    if p.boolean("checkNamespaceIdExist", false) {
        let Some(id) = p.optional("customNamespaceId") else {
            return Ok(json_ok(Value::Bool(false)));
        };
        // A namespace the caller may not see is one that does not exist.
        let exists = caller.sees_namespace(id) && state.config.namespace(id).await?.is_some();
        return Ok(json_ok(Value::Bool(exists)));
    }
    let counts = state.config.count_by_tenant();
    if p.optional("show") == Some("all") {
        let id = crate::model::config::normalize_tenant(p.optional("namespaceId").unwrap_or(""));
        if !caller.sees_namespace(id) {
            return Err(ApiError::caused(
                StatusCode::NOT_FOUND,
                format!("namespaceId [ {id} ] not exist"),
            ));
        }
        if id.is_empty() {
            let count = counts.get("").copied().unwrap_or(0);
            return Ok(json_ok(item(
                "",
                "public",
                Some("Public Namespace"),
                count,
                0,
            )));
        }
        return match state.config.namespace(id).await? {
            Some(ns) => {
                let count = counts.get(id).copied().unwrap_or(0);
                Ok(json_ok(item(
                    &ns.id,
                    &ns.name,
                    ns.desc.as_deref(),
                    count,
                    2,
                )))
            }
            None => Err(ApiError::caused(
                StatusCode::NOT_FOUND,
                format!("namespaceId [ {id} ] not exist"),
            )),
        };
    }
    let mut list = Vec::new();
    if caller.sees_namespace("") {
        list.push(item(
            "",
            "public",
            Some("Public Namespace"),
            counts.get("").copied().unwrap_or(0),
            0,
        ));
    }
    for ns in state.config.namespaces().await? {
        if !caller.sees_namespace(&ns.id) {
            continue;
        }
        let count = counts.get(ns.id.as_str()).copied().unwrap_or(0);
        list.push(item(&ns.id, &ns.name, ns.desc.as_deref(), count, 2));
    }
    Ok(rest_result(None, Value::Array(list)))
}

/// `POST customNamespaceId, namespaceName, namespaceDesc`: `true`, or `false` for a bad
/// or taken id or a name with `@#$%^&*`. A blank id gets a random UUID.
pub async fn create_namespace(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = p
        .optional("namespaceName")
        .ok_or_else(|| ApiError::config_bad_request("Param 'namespaceName' is required."))?;
    let id = p
        .optional("customNamespaceId")
        .map(str::to_string)
        .unwrap_or_else(random_id);
    if !valid_id(&id)
        || id.eq_ignore_ascii_case("public")
        || name.contains(['@', '#', '$', '%', '^', '&', '*'])
        || name.chars().count() > 128
    {
        return Ok(json_ok(Value::Bool(false)));
    }
    let created = state
        .config
        .create_namespace(&NamespaceRow {
            id,
            name: name.to_string(),
            desc: p.optional("namespaceDesc").map(str::to_string),
        })
        .await?;
    Ok(json_ok(Value::Bool(created)))
}

/// `PUT namespace, namespaceShowName, namespaceDesc`: `true` when it was changed.
pub async fn update_namespace(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = p
        .optional("namespace")
        .ok_or_else(|| ApiError::config_bad_request("Param 'namespace' is required."))?;
    let name = p
        .optional("namespaceShowName")
        .ok_or_else(|| ApiError::config_bad_request("Param 'namespaceShowName' is required."))?;
    if name.contains(['@', '#', '$', '%', '^', '&', '*']) || name.chars().count() > 128 {
        return Err(ApiError::config_bad_request(format!(
            "invalid namespaceShowName {name:?}: no @#$%^&* and at most 128 characters"
        )));
    }
    let updated = state
        .config
        .update_namespace(&NamespaceRow {
            id: id.to_string(),
            name: name.to_string(),
            desc: p.optional("namespaceDesc").map(str::to_string),
        })
        .await?;
    Ok(json_ok(Value::Bool(updated)))
}

/// `DELETE namespaceId`: `true` (its configs stay, as Nacos).
pub async fn delete_namespace(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let id = p
        .optional("namespaceId")
        .ok_or_else(|| ApiError::config_bad_request("Param 'namespaceId' is required."))?;
    state.config.delete_namespace(id).await?;
    Ok(json_ok(Value::Bool(true)))
}
