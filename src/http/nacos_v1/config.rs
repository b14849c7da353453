//! Config API v1: `/nacos/v1/cs/configs` (get, publish, delete, search, beta, tags,
//! detail, export, import), the long-polling listener and the listener queries, as
//! Nacos `ConfigController` and `ListenerController` answer them.
//!
//! Errors use the config API's shape: status and body `caused: <message>;`. A config
//! that does not exist is 404 `config data not exist` (with a newline, as Nacos).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::params::{Params, percent_decode};
use crate::config::archive::{self, ArchiveError};
use crate::config::listen::{ListenEntry, parse_listening_configs};
use crate::config::{PublishCommand, Requester, split_ips};
use crate::model::PageRequest;
use crate::model::config::{
    ConfigKey, DEFAULT_CONFIG_GROUP, content_md5, content_type_of, normalize_tenant,
    normalize_type, validate_config_group, validate_data_id, validate_tag, validate_tenant,
};
use crate::model::config::{PublishRecord, SearchFilter};

/// `Expires` of answers that must not be cached.
const EPOCH_HTTP_DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
/// Header names of config answers, parsed once.
const CONFIG_TYPE: HeaderName = HeaderName::from_static("config-type");
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
const IS_BETA: HeaderName = HeaderName::from_static("isbeta");
const VIPSERVER_TAG: HeaderName = HeaderName::from_static("vipserver-tag");
const ENCRYPTED_DATA_KEY: HeaderName = HeaderName::from_static("encrypted-data-key");

/// The client's IP as the server sees it (the peer address). `X-Forwarded-For` is not
/// trusted.
pub fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .map(|ip| match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// 200 with a JSON body.
pub fn json_ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

/// The lines of a `Listening-Configs` parameter as the listener reads it: Nacos decodes
/// the (already form-decoded) value once more (`URLDecoder.decode`), then parses it.
/// The one reading for the handler and for the permission check, so both see the same
/// configs.
pub fn listening_entries(param: &str) -> Result<Vec<ListenEntry>, &'static str> {
    parse_listening_configs(&percent_decode(param))
}

/// `true` as the config API's writes answer it.
fn json_true() -> Response {
    json_response(StatusCode::OK, &Value::Bool(true))
}

/// `{"code":200,"message":<message>,"data":<data>}` (Nacos `RestResult`).
pub fn rest_result(message: Option<&str>, data: Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"code": 200, "message": message, "data": data}),
    )
}

/// The key from `dataId`, `group` (required) and `tenant`, validated.
fn config_key(p: &Params) -> Result<ConfigKey, ApiError> {
    let data_id = p.optional("dataId").unwrap_or("");
    validate_data_id(data_id).map_err(ApiError::config_bad_request)?;
    let group = p.optional("group").unwrap_or("");
    validate_config_group(group).map_err(ApiError::config_bad_request)?;
    let tenant = tenant_param(p, "tenant")?;
    Ok(ConfigKey::new(data_id, group, &tenant))
}

/// A tenant parameter, normalized (`public` → `""`) and validated.
fn tenant_param(p: &Params, name: &str) -> Result<String, ApiError> {
    let tenant = normalize_tenant(p.optional(name).unwrap_or(""));
    validate_tenant(tenant).map_err(ApiError::config_bad_request)?;
    Ok(tenant.to_string())
}

/// `pageNo` and `pageSize`: integers ≥ 1 (default 1 and 100), `pageSize` at most
/// `max` (or capped to `cap` silently, as history caps at 500).
pub fn page_request(p: &Params, max: u32, cap: Option<u32>) -> Result<PageRequest, ApiError> {
    let number = parse_positive(p, "pageNo", 1)?;
    let mut size = parse_positive(p, "pageSize", 100)?;
    if let Some(cap) = cap {
        size = size.min(cap);
    }
    if size > max {
        return Err(ApiError::config_bad_request(format!(
            "invalid pageSize {size}: must be between 1 and {max}"
        )));
    }
    Ok(PageRequest { number, size })
}

fn parse_positive(p: &Params, name: &str, default: u32) -> Result<u32, ApiError> {
    match p.optional(name) {
        None => Ok(default),
        Some(raw) => raw.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::config_bad_request(format!(
                "invalid {name} {raw:?}: must be an integer of at least 1"
            ))
        }),
    }
}

/// `GET /nacos/v1/cs/configs`: one config, or a search (`search=`), an export
/// (`export=true` / `exportV2=true`), the beta version (`beta=true`) or the detail
/// (`show=all`).
pub async fn get_configs(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(&req);
    let auto_tag = header_str(req.headers(), "Vipserver-Tag").map(str::to_string);
    let p = Params::from_request(req, &()).await?;
    if let Some(mode) = p.optional("search") {
        return search(&state, &p, mode == "blur").await;
    }
    let export_v2 = p.boolean("exportV2", false);
    if export_v2 || p.boolean("export", false) {
        return export(&state, &p, export_v2).await;
    }
    let key = config_key(&p)?;
    if p.boolean("beta", false) {
        let beta = state.config.beta(&key).await?;
        let data = beta.map(|b| {
            json!({
                "id": b.id.to_string(), "dataId": b.key.data_id, "group": b.key.group,
                "tenant": b.key.tenant, "appName": b.app_name, "content": b.content,
                "md5": b.md5, "betaIps": b.beta_ips, "type": null,
                "encryptedDataKey": b.encrypted_data_key,
            })
        });
        // Nacos answers this query with the message of the stop operation (sic).
        return Ok(rest_result(
            Some("stop beta ok"),
            data.unwrap_or(Value::Null),
        ));
    }
    if p.optional("show") == Some("all") {
        let Some(d) = state.config.detail(&key).await? else {
            return Ok(json_response(StatusCode::OK, &Value::Null));
        };
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": d.id.to_string(), "dataId": d.key.data_id, "group": d.key.group,
                "content": d.content, "md5": d.md5, "tenant": d.key.tenant,
                "appName": d.app_name, "type": d.config_type, "createTime": d.created_ms,
                "modifyTime": d.modified_ms, "createUser": d.src_user, "createIp": d.src_ip,
                "desc": d.desc, "use": d.usage, "effect": d.effect, "schema": d.schema,
                "configTags": d.config_tags, "encryptedDataKey": d.encrypted_data_key,
            }),
        ));
    }
    let tag = p.optional("tag");
    if let Some(tag) = tag {
        validate_tag(tag).map_err(ApiError::config_bad_request)?;
    }
    let who = Requester {
        ip,
        tag,
        auto_tag: auto_tag.as_deref(),
    };
    let Some(served) = state.config.get(&key, &who) else {
        return Ok((
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
            "config data not exist\n",
        )
            .into_response());
    };
    let v = &served.version;
    let mut resp = Response::new(axum::body::Body::from(v.content.clone()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type_of(&served.config_type)),
    );
    insert(h, CONFIG_TYPE, &served.config_type);
    insert(h, CONTENT_MD5, &v.md5);
    insert(h, header::LAST_MODIFIED, &v.last_modified);
    no_cache(h);
    if served.beta {
        h.insert(IS_BETA, HeaderValue::from_static("true"));
    }
    if let Some(tag) = &served.tag {
        insert(h, VIPSERVER_TAG, tag);
    }
    if !v.encrypted_data_key.is_empty() {
        insert(h, ENCRYPTED_DATA_KEY, &v.encrypted_data_key);
    }
    Ok(resp)
}

fn insert(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn no_cache(h: &mut HeaderMap) {
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static(EPOCH_HTTP_DATE));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,no-store"),
    );
}

async fn search(state: &AppState, p: &Params, blur: bool) -> Result<Response, ApiError> {
    let page = page_request(p, state.config_settings.max_page_size, None)?;
    let tags = p
        .optional("config_tags")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let filter = SearchFilter {
        blur,
        data_id: p.optional("dataId").unwrap_or("").to_string(),
        group: p.optional("group").unwrap_or("").to_string(),
        tenant: tenant_param(p, "tenant")?,
        app_name: p.optional("appName").unwrap_or("").to_string(),
        tags,
    };
    let result = state.config.search(&filter, page).await?;
    let items: Vec<Value> = result
        .items
        .iter()
        .map(|r| {
            json!({
                "id": r.id.to_string(), "dataId": r.key.data_id, "group": r.key.group,
                "content": r.content, "md5": null, "encryptedDataKey": r.encrypted_data_key,
                "tenant": r.key.tenant, "appName": r.app_name, "type": r.config_type,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &page_json(result.total, page, items),
    ))
}

/// Nacos's `Page` JSON.
pub fn page_json(total: i64, page: PageRequest, items: Vec<Value>) -> Value {
    let size = i64::from(page.size);
    json!({
        "totalCount": total,
        "pageNumber": page.number,
        "pagesAvailable": (total + size - 1) / size,
        "pageItems": items,
    })
}

async fn export(state: &AppState, p: &Params, v2: bool) -> Result<Response, ApiError> {
    let ids: Vec<i64> = p
        .optional("ids")
        .map(|raw| {
            raw.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let filter = SearchFilter {
        blur: true,
        data_id: p.optional("dataId").unwrap_or("").to_string(),
        group: p.optional("group").unwrap_or("").to_string(),
        tenant: tenant_param(p, "tenant")?,
        app_name: p.optional("appName").unwrap_or("").to_string(),
        tags: Vec::new(),
    };
    let mut rows = state.config.export_rows(&filter, &ids).await?;
    // Rows picked by id stay inside the namespace the request names (and was allowed).
    rows.retain(|r| r.key.tenant == filter.tenant);
    let zip = archive::export(&rows, v2)
        .map_err(|e| ApiError::caused(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let name = format!(
        "nacos_config_export_{}.zip",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    );
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment;filename={name}"),
            ),
        ],
        zip,
    )
        .into_response())
}

/// Checks the optional fields of a publish as Nacos `ParamUtils.checkParam`.
fn check_advance(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    for (name, max) in [
        ("desc", 128),
        ("use", 32),
        ("effect", 32),
        ("type", 32),
        ("schema", 32768),
    ] {
        if let Some(v) = p.optional(name)
            && v.chars().count() > max
        {
            return Err(ApiError::config_bad_request(format!(
                "too long {name}, over {max}"
            )));
        }
    }
    let Some(raw) = p.optional("config_tags") else {
        return Ok(None);
    };
    let mut tags: Vec<String> = Vec::new();
    for t in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if t.chars().count() > 64 {
            return Err(ApiError::config_bad_request(format!(
                "too long config_tags entry, over 64: {t}"
            )));
        }
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    if tags.len() > 5 {
        return Err(ApiError::config_bad_request("too many config_tags, over 5"));
    }
    Ok(Some(tags))
}

/// `POST /nacos/v1/cs/configs`: publish (formal, beta with the `betaIps` header, or
/// tag with `tag`), or import with `import=true` (multipart `file`).
pub async fn post_configs(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(&req);
    let is_import = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "import" && v == "true"))
        .unwrap_or(false);
    if is_import {
        return import(state, ip, req).await;
    }
    let beta_ips = header_str(req.headers(), "betaIps").map(split_ips);
    // As Nacos 2.x, from the header only; blank means none.
    let cas_md5 = header_str(req.headers(), "casMd5").map(str::to_string);
    let caller = Caller::of(req.extensions());
    let p = Params::from_request(req, &()).await?;
    let key = config_key(&p)?;
    let content = p.raw("content").unwrap_or("");
    if content.trim().is_empty() {
        return Err(ApiError::config_bad_request(format!(
            "content is blank : {content}"
        )));
    }
    let max = state.config_settings.max_content_bytes;
    if content.len() > max {
        return Err(ApiError::config_bad_request(format!(
            "invalid content, over {max}"
        )));
    }
    let config_tags = check_advance(&p)?;
    let tag = p.optional("tag");
    if let Some(tag) = tag {
        validate_tag(tag).map_err(ApiError::config_bad_request)?;
    }
    let owned = |name: &str| p.optional(name).map(str::to_string);
    let record = PublishRecord {
        key,
        content: content.to_string(),
        md5: content_md5(content),
        config_type: normalize_type(p.optional("type")).to_string(),
        app_name: owned("appName"),
        src_user: src_user(&caller, &p),
        src_ip: ip.to_string(),
        desc: owned("desc"),
        usage: owned("use"),
        effect: owned("effect"),
        schema: owned("schema"),
        config_tags,
        encrypted_data_key: owned("encryptedDataKey").unwrap_or_default(),
        cas_md5,
    };
    let cmd = PublishCommand {
        record,
        beta_ips: beta_ips.filter(|ips| !ips.is_empty()),
        tag: tag.map(str::to_string),
    };
    state.config.publish(cmd).await?;
    Ok(json_true())
}

/// Who a history row names as its author (`src_user`): the signed-in user, as Nacos
/// `RequestUtil#getSrcUserName`; with auth off the `src_user` parameter, else the
/// `username` one. Unlike Nacos, a signed-in user cannot name another author with
/// `src_user`, so the history stays a record of who changed what.
fn src_user(caller: &Caller, p: &Params) -> Option<String> {
    caller
        .username()
        .or_else(|| p.optional("src_user"))
        .or_else(|| p.optional("username"))
        .map(str::to_string)
}

async fn import(state: AppState, ip: IpAddr, req: Request) -> Result<Response, ApiError> {
    let author = Caller::of(req.extensions()).username().map(str::to_string);
    let query = req.uri().query().unwrap_or("").to_string();
    let p = Params::new(query, Default::default());
    let tenant = tenant_param(&p, "namespace")?;
    let policy = p.optional("policy").unwrap_or("ABORT").to_ascii_uppercase();
    if !matches!(policy.as_str(), "ABORT" | "SKIP" | "OVERWRITE") {
        return Err(ApiError::config_bad_request(format!(
            "invalid policy {policy:?}: ABORT, SKIP or OVERWRITE"
        )));
    }
    if !tenant.is_empty() && state.config.namespace(&tenant).await?.is_none() {
        return Ok(import_error(100001, "namespace does not exist"));
    }
    let mut multipart = Multipart::from_request(req, &state)
        .await
        .map_err(|e| ApiError::config_bad_request(format!("invalid multipart body: {e}")))?;
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::config_bad_request(format!("invalid multipart body: {e}")))?
    {
        if field.name() == Some("file") {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::config_bad_request(format!("invalid file part: {e}")))?;
            file = Some(bytes);
        }
    }
    let Some(file) = file else {
        return Ok(import_error(
            ArchiveError::Empty.code(),
            "no file part named 'file'",
        ));
    };
    // The metadata file of a large export is longer than one config may be.
    let max_entry = (state.config_settings.max_content_bytes as u64).max(4 * 1024 * 1024);
    // Inflating up to 64 MiB is CPU work: off the async threads.
    let parsed = tokio::task::spawn_blocking(move || archive::import(&file, max_entry))
        .await
        .map_err(|e| ApiError::caused(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let parsed = match parsed {
        Ok(a) => a,
        Err(e) => return Ok(import_error(e.code(), &e.message())),
    };
    let unrecognized: Vec<Value> = parsed
        .unrecognized
        .iter()
        .map(|n| json!({"itemName": n}))
        .collect();
    let mut succ = 0u32;
    let mut skip_data: Vec<Value> = Vec::new();
    // Nacos's `{dataId, group}` items, plus the reason a config was not imported (a
    // conflict under ABORT, or a config that cannot be stored).
    let failed = |data_id: &str, group: &str, reason: &str| json!({"dataId": data_id, "group": group, "reason": reason});
    let mut fail_data: Vec<Value> = parsed
        .failed
        .iter()
        .map(|(group, data_id, why)| failed(data_id, group, why))
        .collect();
    let max_content = state.config_settings.max_content_bytes;
    let mut abort = false;
    for cfg in parsed.configs {
        let item = json!({"dataId": cfg.data_id, "group": cfg.group});
        let invalid = validate_data_id(&cfg.data_id)
            .and_then(|_| validate_config_group(&cfg.group))
            .err()
            .or_else(|| {
                cfg.content
                    .trim()
                    .is_empty()
                    .then(|| "content is blank".to_string())
            })
            .or_else(|| {
                (cfg.content.len() > max_content)
                    .then(|| format!("invalid content, over {max_content}"))
            });
        if let Some(reason) = invalid {
            fail_data.push(failed(&cfg.data_id, &cfg.group, &reason));
            continue;
        }
        if abort {
            skip_data.push(item);
            continue;
        }
        let key = ConfigKey::new(cfg.data_id.clone(), cfg.group.clone(), &tenant);
        let exists = !state.config.formal_md5(&key).is_empty();
        if exists {
            match policy.as_str() {
                "ABORT" => {
                    fail_data.push(item);
                    abort = true;
                    continue;
                }
                "SKIP" => {
                    skip_data.push(item);
                    continue;
                }
                _ => {}
            }
        }
        let (data_id, group) = (cfg.data_id.clone(), cfg.group.clone());
        let record = PublishRecord {
            key,
            md5: content_md5(&cfg.content),
            content: cfg.content,
            config_type: normalize_type(cfg.config_type.as_deref()).to_string(),
            app_name: cfg.app_name,
            src_ip: ip.to_string(),
            src_user: author.clone(),
            desc: cfg.desc,
            ..Default::default()
        };
        let published = state
            .config
            .publish(PublishCommand {
                record,
                ..Default::default()
            })
            .await;
        match published {
            Ok(()) => succ += 1,
            Err(e) => {
                tracing::error!(error = %e, %data_id, %group, "import: config not stored");
                fail_data.push(failed(&data_id, &group, &e.to_string()));
            }
        }
    }
    let mut data = json!({"succCount": succ, "skipCount": skip_data.len()});
    if !fail_data.is_empty() {
        data["failData"] = Value::Array(fail_data);
    }
    if !skip_data.is_empty() {
        data["skipData"] = Value::Array(skip_data);
    }
    if !unrecognized.is_empty() {
        data["unrecognizedCount"] = json!(unrecognized.len());
        data["unrecognizedData"] = Value::Array(unrecognized);
    }
    Ok(rest_result(Some("导入成功"), data))
}

fn import_error(code: u32, message: &str) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"code": code, "message": message, "data": null}),
    )
}

/// `DELETE /nacos/v1/cs/configs`: one config (or its tag version with `tag`), many
/// with `delType=ids&ids=1,2`, or the beta version with `beta=true`.
pub async fn delete_configs(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let ip = client_ip(&req).to_string();
    let caller = Caller::of(req.extensions());
    let p = Params::from_request(req, &()).await?;
    let src_user = src_user(&caller, &p);
    if p.optional("delType") == Some("ids") {
        let raw = p.optional("ids").unwrap_or("");
        let mut ids = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            ids.push(part.parse::<i64>().map_err(|_| {
                ApiError::config_bad_request(format!("invalid ids: {part:?} is not a number"))
            })?);
        }
        // Only configs of the namespace the request names (and was allowed) go.
        let tenant = tenant_param(&p, "tenant")?;
        for key in state
            .config
            .keys_by_ids(&ids)
            .await?
            .into_iter()
            .filter(|k| k.tenant == tenant)
        {
            state
                .config
                .remove(&key, None, &ip, src_user.as_deref())
                .await?;
        }
        return Ok(rest_result(None, Value::Bool(true)));
    }
    let key = config_key(&p)?;
    if p.boolean("beta", false) {
        state.config.stop_beta(&key).await?;
        return Ok(rest_result(Some("stop beta ok"), Value::Bool(true)));
    }
    let tag = p.optional("tag");
    if let Some(tag) = tag {
        validate_tag(tag).map_err(ApiError::config_bad_request)?;
    }
    state
        .config
        .remove(&key, tag, &ip, src_user.as_deref())
        .await?;
    Ok(json_true())
}

/// `GET /nacos/v1/cs/configs/catalog`: the advance info of a config.
pub async fn catalog(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let key = config_key(&p)?;
    let data = state.config.detail(&key).await?.map(|d| {
        json!({
            "createTime": d.created_ms, "modifyTime": d.modified_ms, "createUser": d.src_user,
            "createIp": d.src_ip, "desc": d.desc, "use": d.usage, "effect": d.effect,
            "type": d.config_type, "schema": d.schema, "configTags": d.config_tags,
        })
    });
    Ok(rest_result(None, data.unwrap_or(Value::Null)))
}

/// `POST /nacos/v1/cs/configs/listener`: long polling (see [`crate::config::listen`]).
pub async fn listener(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let ip = client_ip(&req);
    let (tag, timeout, no_hangup) = {
        let header = |name: &str| header_str(req.headers(), name).map(str::to_string);
        (
            header("Vipserver-Tag"),
            header("Long-Pulling-Timeout"),
            header("Long-Pulling-Timeout-No-Hangup")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        )
    };
    let timeout = match timeout {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::config_bad_request(format!(
                "invalid Long-Pulling-Timeout header {raw:?}: milliseconds expected"
            ))
        })?),
    };
    // Only owned values live on while the request is held: the request's headers and
    // body are views into hyper's read buffer, which would otherwise stay allocated
    // for every held listener.
    let entries: Vec<ListenEntry> = {
        let p = Params::from_request(req, &()).await?;
        let invalid = || ApiError::config_bad_request("invalid probeModify");
        let raw = p.raw("Listening-Configs").ok_or_else(invalid)?;
        listening_entries(raw).map_err(|_| invalid())?
    };
    let hold = match timeout {
        Some(ms) if !no_hangup => Some(Duration::from_millis(
            ms.saturating_sub(500)
                .max(state.config_settings.min_long_poll_ms),
        )),
        _ => None,
    };
    let answer = state.config.listen(ip, tag, entries, hold).await;
    let mut resp = if answer.is_empty() {
        Response::new(axum::body::Body::empty())
    } else {
        Response::new(axum::body::Body::from(format!("{answer}\n")))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    no_cache(h);
    if timeout.is_none() && !answer.is_empty() {
        // Legacy short polling (clients before 2.0.4) reads the changes from headers.
        let decoded = percent_decode(&answer);
        let old: String = decoded
            .split('\u{1}')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut parts = l.split('\u{2}');
                format!(
                    "{}:{};",
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or("")
                )
            })
            .collect();
        insert(h, HeaderName::from_static("probe-modify-response"), &old);
        insert(
            h,
            HeaderName::from_static("probe-modify-response-new"),
            &answer,
        );
    }
    Ok(resp)
}

/// `GET /nacos/v1/cs/configs/listener?dataId&group&tenant`: the held listeners of a
/// config and their MD5s, `{"collectStatus":200,"lisentersGroupkeyStatus":{ip:md5}}`
/// (sic, as Nacos).
pub async fn listeners_of_config(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let data_id = p.optional("dataId").unwrap_or("");
    let group = p.optional("group").unwrap_or(DEFAULT_CONFIG_GROUP);
    let key = ConfigKey::new(data_id, group, &tenant_param(&p, "tenant")?);
    let mut status = serde_json::Map::new();
    for (ip, md5) in state.config.hub().listeners_of(&key) {
        status.insert(ip.to_string(), Value::String(md5));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"collectStatus": 200, "lisentersGroupkeyStatus": status}),
    ))
}

/// `GET /nacos/v1/cs/listener?ip=[&all=true][&tenant=]`: the configs a client IP
/// listens to, `{"collectStatus":200,"lisentersGroupkeyStatus":{groupKey:md5}}`; by
/// default only keys of the public namespace, with `tenant` only that namespace's.
pub async fn listeners_of_ip(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let raw = p
        .required("ip")
        .map_err(|e| ApiError::config_bad_request(e.message))?;
    let ip: IpAddr = raw
        .parse()
        .map_err(|_| ApiError::config_bad_request(format!("invalid ip {raw:?}")))?;
    let all = p.boolean("all", false);
    let tenant = tenant_param(&p, "tenant")?;
    let mut status = serde_json::Map::new();
    for (key, md5) in state.config.hub().keys_of_ip(ip) {
        if all || key.tenant == tenant {
            status.insert(key.group_key(), Value::String(md5));
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"collectStatus": 200, "lisentersGroupkeyStatus": status}),
    ))
}
