//! `/nacos/v1/auth/*`: login, users, roles and permissions, with Nacos's paths,
//! parameters and answers (`shared/nacos-api.md` §6). Password hashes are never
//! answered.

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::error::ApiError;
use super::super::params::Params;
use super::config::{json_ok, page_json, page_request, rest_result};
use crate::auth::AuthError;
use crate::model::PermissionRow;

/// `POST /nacos/v1/auth/login` and `/nacos/v1/auth/users/login`: `username` and
/// `password` → `{"accessToken","tokenTtl","globalAdmin","username"}` (`tokenTtl` in
/// seconds) and the header `Authorization: Bearer <token>`; 403 `user not found!` for
/// an unknown user or a wrong password.
pub async fn login(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    // Not trimmed: `nacos ` is not `nacos` (names never hold spaces, see `check_name`).
    let username = p.exact("username").ok_or(AuthError::UserNotFound)?;
    let password = p.raw("password").unwrap_or("");
    let login = state.auth.login(username, password).await?;
    let bearer = format!("Bearer {}", login.access_token);
    let body = json!({
        "accessToken": login.access_token,
        "tokenTtl": login.token_ttl,
        "globalAdmin": login.global_admin,
        "username": login.username,
    });
    let mut resp = json_ok(body);
    if let Ok(value) = bearer.parse() {
        resp.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(resp)
}

/// A page of `items` as Nacos's `Page` JSON.
fn page_of(p: &Params, items: Vec<Value>, max: u32) -> Result<Response, ApiError> {
    let page = page_request(p, max, None)?;
    let total = items.len() as i64;
    let skip = (page.number as usize - 1).saturating_mul(page.size as usize);
    let items = items
        .into_iter()
        .skip(skip)
        .take(page.size as usize)
        .collect();
    Ok(json_ok(page_json(total, page, items)))
}

/// Whether `value` passes a `search=accurate|blur` filter on `wanted` (absent: all).
fn matches(p: &Params, param: &str, value: &str) -> bool {
    match p.optional(param) {
        None => true,
        Some(wanted) if p.optional("search") == Some("blur") => value.contains(wanted),
        Some(wanted) => value == wanted,
    }
}

/// `GET /nacos/v1/auth/users`: a page of users (`username`, with `search=blur` a part
/// of it); each item's `password` is empty.
pub async fn list_users(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let items = state
        .auth
        .usernames()
        .into_iter()
        .filter(|u| matches(&p, "username", u))
        .map(|u| json!({"username": u, "password": ""}))
        .collect();
    page_of(&p, items, state.config_settings.max_page_size)
}

/// `GET /nacos/v1/auth/users/search?username=`: names containing `username`.
pub async fn search_users(State(state): State<AppState>, p: Params) -> Response {
    let part = p.optional("username").unwrap_or("");
    let names: Vec<String> = state
        .auth
        .usernames()
        .into_iter()
        .filter(|u| u.contains(part))
        .collect();
    json_ok(json!(names))
}

/// `POST /nacos/v1/auth/users`: creates a user (`username`, `password`).
pub async fn create_user(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let username = p.required("username")?;
    let password = p
        .raw("password")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("Param 'password' is required."))?;
    state.auth.create_user(username, password).await?;
    Ok(rest_result(None, json!("create user ok!")))
}

/// `PUT /nacos/v1/auth/users`: sets `newPassword` of `username` (the user itself or an
/// admin).
pub async fn update_user(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let username = p.required("username")?;
    let password = p
        .raw("newPassword")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("Param 'newPassword' is required."))?;
    state.auth.update_password(username, password).await?;
    Ok(rest_result(None, json!("update user ok!")))
}

/// `DELETE /nacos/v1/auth/users`: deletes `username` and its roles; an admin cannot be
/// deleted.
pub async fn delete_user(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    state.auth.delete_user(p.required("username")?).await?;
    Ok(rest_result(None, json!("delete user ok!")))
}

/// `GET /nacos/v1/auth/roles`: a page of role bindings (`role`, `username` filters).
pub async fn list_roles(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let items = state
        .auth
        .roles()
        .await?
        .into_iter()
        .filter(|r| matches(&p, "role", &r.role) && matches(&p, "username", &r.username))
        .map(|r| json!({"role": r.role, "username": r.username}))
        .collect();
    page_of(&p, items, state.config_settings.max_page_size)
}

/// `GET /nacos/v1/auth/roles/search?role=`: role names containing `role`.
pub async fn search_roles(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let part = p.optional("role").unwrap_or("");
    let mut names: Vec<String> = state
        .auth
        .roles()
        .await?
        .into_iter()
        .map(|r| r.role)
        .filter(|r| r.contains(part))
        .collect();
    names.dedup();
    Ok(json_ok(json!(names)))
}

/// `POST /nacos/v1/auth/roles`: gives `username` the `role`.
pub async fn create_role(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    state
        .auth
        .bind_role(p.required("role")?, p.required("username")?)
        .await?;
    Ok(rest_result(None, json!("add role ok!")))
}

/// `DELETE /nacos/v1/auth/roles`: takes `role` from `username`, or from everyone.
pub async fn delete_role(State(state): State<AppState>, p: Params) -> Result<Response, ApiError> {
    let role = p.required("role")?;
    let username = p.optional("username");
    state.auth.unbind_role(role, username).await?;
    Ok(rest_result(
        None,
        json!(match username {
            Some(u) => format!("delete role of user {u} ok!"),
            None => "delete role ok!".to_string(),
        }),
    ))
}

fn permission_of(p: &Params) -> Result<PermissionRow, ApiError> {
    Ok(PermissionRow {
        role: p.required("role")?.to_string(),
        resource: p.required("resource")?.to_string(),
        action: p.required("action")?.to_string(),
    })
}

/// `GET /nacos/v1/auth/permissions`: a page of permissions (`role` filter).
pub async fn list_permissions(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    let items = state
        .auth
        .permissions()
        .await?
        .into_iter()
        .filter(|r| matches(&p, "role", &r.role))
        .map(|r| json!({"role": r.role, "resource": r.resource, "action": r.action}))
        .collect();
    page_of(&p, items, state.config_settings.max_page_size)
}

/// `POST /nacos/v1/auth/permissions`: grants `role` the `action` (`r`, `w`, `rw`) on
/// `resource` (e.g. `dev:*:*` for all of namespace `dev`).
pub async fn create_permission(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    state.auth.add_permission(&permission_of(&p)?).await?;
    Ok(rest_result(None, json!("add permission ok!")))
}

/// `DELETE /nacos/v1/auth/permissions`: removes a permission.
pub async fn delete_permission(
    State(state): State<AppState>,
    p: Params,
) -> Result<Response, ApiError> {
    state.auth.delete_permission(&permission_of(&p)?).await?;
    Ok(rest_result(None, json!("delete permission ok!")))
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
