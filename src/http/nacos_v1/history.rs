//! Config history API v1 (`/nacos/v1/cs/history`), as Nacos `HistoryController`:
//! pages of a config's history (newest first, `pageSize` capped at 500), one row by
//! `nid`, the previous row of a config, and the configs of a namespace.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::AppState;
use super::super::error::ApiError;
use super::super::params::Params;
use super::config::{json_ok, page_json};
use crate::model::config::{ConfigKey, normalize_tenant};
use crate::model::config::{HistoryRow, SearchFilter};

/// Jackson's default rendering of a `java.sql.Timestamp`: `2020-12-05T01:48:03.380+0000`.
pub fn java_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn history_json(h: &HistoryRow, with_content: bool) -> Value {
    json!({
        "id": h.nid.to_string(),
        "lastId": -1,
        "dataId": h.key.data_id,
        "group": h.key.group,
        "tenant": h.key.tenant,
        "appName": h.app_name,
        "md5": if with_content { json!(h.md5) } else { Value::Null },
        "content": if with_content { json!(h.content) } else { Value::Null },
        "srcIp": h.src_ip,
        "srcUser": h.src_user,
        // CHAR(10), right-padded as Nacos reads it.
        "opType": format!("{:<10}", h.op_type),
        "createdTime": java_time(h.created_ms),
        "lastModifiedTime": java_time(h.modified_ms),
        "encryptedDataKey": h.encrypted_data_key,
    })
}

/// 403 unless a history row found by id belongs to the config the request's `dataId`,
/// `group` and `tenant` name (as Nacos 2.x), so an id reaches no other namespace.
fn the_named_config(row: &HistoryRow, p: &Params) -> Result<(), ApiError> {
    if row.key != key_of(p) {
        return Err(ApiError::caused(
            StatusCode::FORBIDDEN,
            "Please check dataId, group or namespaceId.",
        ));
    }
    Ok(())
}

fn key_of(p: &Params) -> ConfigKey {
    ConfigKey::new(
        p.optional("dataId").unwrap_or(""),
        p.optional("group").unwrap_or(""),
        p.optional("tenant").unwrap_or(""),
    )
}

/// `GET /nacos/v1/cs/history`: with `nid`, one row with its content (its dataId,
/// group and tenant must match the parameters, else 403; an unknown `nid` is an
/// empty body); otherwise a page of the config's history.
pub async fn history(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    if let Some(raw) = p.optional("nid") {
        let nid: i64 = raw.parse().map_err(|_| {
            ApiError::config_bad_request(format!("invalid nid {raw:?}: a number is expected"))
        })?;
        let Some(row) = state.config.history_detail(nid).await? else {
            return Ok(json_ok(Value::Null));
        };
        the_named_config(&row, &p)?;
        return Ok(json_ok(history_json(&row, true)));
    }
    let key = key_of(&p);
    let page = super::config::page_request(&p, state.config_settings.max_page_size, Some(500))?;
    let result = state.config.history(&key, page).await?;
    let items = result
        .items
        .iter()
        .map(|h| history_json(h, false))
        .collect();
    Ok(json_ok(page_json(result.total, page, items)))
}

/// `GET /nacos/v1/cs/history/previous?id=&dataId=&group=&tenant=`: the newest history
/// row of the config whose `config_info.id` is `id`; 403 when that config is not the
/// one `dataId`, `group` and `tenant` name (as Nacos 2.x), so a caller allowed on one
/// namespace cannot read another's through an id.
pub async fn previous(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let raw = p.optional("id").unwrap_or("");
    let id: i64 = raw.parse().map_err(|_| {
        ApiError::config_bad_request(format!("invalid id {raw:?}: a number is expected"))
    })?;
    let Some(row) = state.config.history_previous(id).await? else {
        return Ok(json_ok(Value::Null));
    };
    the_named_config(&row, &p)?;
    Ok(json_ok(history_json(&row, true)))
}

/// `GET /nacos/v1/cs/history/configs?tenant=`: the configs of a namespace.
pub async fn configs_of_namespace(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let filter = SearchFilter {
        tenant: normalize_tenant(p.optional("tenant").unwrap_or("")).to_string(),
        ..Default::default()
    };
    let rows = state.config.export_rows(&filter, &[]).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id.to_string(), "dataId": r.key.data_id, "group": r.key.group,
                "tenant": r.key.tenant, "appName": r.app_name, "type": r.config_type,
            })
        })
        .collect();
    Ok(json_ok(Value::Array(items)))
}
