//! Access control at the router: deny by default.
//!
//! Every route is registered through [`Routes`] with the [`Access`] it requires, so a
//! route without one cannot exist, and the table of `(path, method, access)` is kept:
//! tests walk it, and the gate ([`authenticate`]) enforces it. The gate wraps the whole
//! router, fallback included:
//! * a request whose path is not exactly one of the few public paths must carry valid
//!   credentials (`Authorization: Bearer`, `accessToken`, or `username` and `password`,
//!   as Nacos accepts them) or is answered 403 before any routing — so path tricks
//!   (`//x`, `/./x`, `%2e`, `;x=`, other case) reach no handler unchecked;
//! * the identity found must then hold the access the table gives the request's path
//!   and method — admin, or Nacos's `r`/`w` permission on the resource the request
//!   names (`<namespace>:<group>:naming/<service>`, `<tenant>:<group>:config/<dataId>`);
//!   a path and method the table lacks has no handler (404 or 405 after the gate).
//!
//! Identity never comes from a header that names a user or a server (`User-Agent:
//! Nacos-Server`, `serverIdentity`): those are ignored. The gate reads the parameters
//! once (query and form body) and hands them to the handler, so a request's body is
//! read once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};

use super::AppState;
use super::error::ApiError;
use super::params::Params;
use crate::auth::permission::{Action, config_resource, naming_resource};
use crate::auth::{AuthError, AuthService, Credentials, Principal};
use crate::config::listen::parse_listening_configs;
use crate::model::{DEFAULT_GROUP, GROUP_SEPARATOR};

/// What a route requires of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health probes and login only.
    Public,
    /// Any signed-in user.
    User,
    /// A global admin (`ROLE_ADMIN`).
    Admin,
    /// The user named by the `username` parameter, or an admin.
    SelfOrAdmin,
    /// The action on the naming resource of the request's `namespaceId`, group and
    /// `serviceName`.
    Naming(Action),
    /// The action on the config resource of the request's `tenant`, `group` and
    /// `dataId` (every namespace with `all=true`).
    Config(Action),
    /// Read on the config of every line of the request's `Listening-Configs` (each
    /// line names its own tenant; the Java client sends no `tenant` parameter).
    ConfigListen,
}

/// One registered route, for tests and docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// The path, exactly as routed.
    pub path: &'static str,
    /// The method.
    pub method: Method,
    /// What it requires.
    pub access: Access,
}

/// Builds the router one route at a time, each with its access.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<RouteEntry>,
    open: Option<(&'static str, MethodRouter<AppState>)>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
            open: None,
        }
    }

    /// Starts the methods of `path`.
    pub fn at(mut self, path: &'static str) -> Self {
        self.close();
        self.open = Some((path, MethodRouter::new()));
        self
    }

    fn close(&mut self) {
        if let Some((path, methods)) = self.open.take() {
            self.router = std::mem::take(&mut self.router).route(path, methods);
        }
    }

    fn method<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let Some((path, methods)) = self.open.take() else {
            panic!("Routes::{method} before Routes::at");
        };
        let routed = axum::routing::on(filter, handler);
        self.table.push(RouteEntry {
            path,
            method,
            access,
        });
        self.open = Some((path, methods.merge(routed)));
        self
    }

    /// `GET` of the current path requires `access`.
    pub fn get<H: Handler<T, AppState>, T: 'static>(self, access: Access, handler: H) -> Self {
        self.method(Method::GET, MethodFilter::GET, access, handler)
    }

    /// `POST` of the current path requires `access`.
    pub fn post<H: Handler<T, AppState>, T: 'static>(self, access: Access, handler: H) -> Self {
        self.method(Method::POST, MethodFilter::POST, access, handler)
    }

    /// `PUT` of the current path requires `access`.
    pub fn put<H: Handler<T, AppState>, T: 'static>(self, access: Access, handler: H) -> Self {
        self.method(Method::PUT, MethodFilter::PUT, access, handler)
    }

    /// `DELETE` of the current path requires `access`.
    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, access: Access, handler: H) -> Self {
        self.method(Method::DELETE, MethodFilter::DELETE, access, handler)
    }

    /// `PATCH` of the current path requires `access`.
    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, access: Access, handler: H) -> Self {
        self.method(Method::PATCH, MethodFilter::PATCH, access, handler)
    }

    /// Every route and its access.
    pub fn table(&self) -> &[RouteEntry] {
        &self.table
    }

    /// The router and its table.
    pub fn finish(mut self) -> (Router<AppState>, Vec<RouteEntry>) {
        self.close();
        (self.router, self.table)
    }
}

/// What the gate needs.
pub struct Gate {
    auth: Arc<AuthService>,
    enabled: bool,
    /// Paths served without credentials, matched exactly.
    public: HashSet<&'static str>,
    /// The access of each path's methods, from the route table.
    access: HashMap<&'static str, Vec<(Method, Access)>>,
    body_limit: usize,
}

impl Gate {
    /// The gate of the routes in `table`: `enabled` is `auth.enabled`, `body_limit`
    /// `http.max_body_bytes` (the largest form body it reads).
    pub fn new(
        auth: Arc<AuthService>,
        enabled: bool,
        table: &[RouteEntry],
        body_limit: usize,
    ) -> Self {
        let mut access: HashMap<&'static str, Vec<(Method, Access)>> = HashMap::new();
        for e in table {
            access
                .entry(e.path)
                .or_default()
                .push((e.method.clone(), e.access));
        }
        let public = access
            .iter()
            .filter(|(_, methods)| methods.iter().all(|(_, a)| *a == Access::Public))
            .map(|(path, _)| *path)
            .collect();
        Self {
            auth,
            enabled,
            public,
            access,
            body_limit,
        }
    }
}

fn refuse(e: AuthError) -> Response {
    ApiError::from(e).into_response()
}

/// The credentials of a request, in Nacos's order: `Authorization: Bearer`, the
/// `accessToken` header or parameter, then `username` and `password` parameters.
fn credentials<'a>(
    headers: &'a axum::http::HeaderMap,
    params: &'a Params,
) -> Option<Credentials<'a>> {
    if let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(Credentials::Token(token));
    }
    if let Some(token) = headers
        .get("accessToken")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or_else(|| params.optional("accessToken"))
    {
        return Some(Credentials::Token(token));
    }
    match (params.optional("username"), params.raw("password")) {
        (Some(username), Some(password)) if !password.is_empty() => {
            Some(Credentials::Password { username, password })
        }
        _ => None,
    }
}

/// The gate: see the module docs.
pub async fn authenticate(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if !gate.enabled || gate.public.contains(req.uri().path()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let (params, body) = match Params::read(&parts, body, gate.body_limit).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let principal = match credentials(&parts.headers, &params) {
        None => return refuse(AuthError::UserNotFound),
        Some(c) => match gate.auth.authenticate(c).await {
            Ok(p) => p,
            Err(e) => return refuse(e),
        },
    };
    let access = gate.access.get(parts.uri.path()).and_then(|methods| {
        methods
            .iter()
            .find(|(m, _)| *m == parts.method)
            .map(|(_, a)| *a)
    });
    if let Some(access) = access
        && !allows(&principal, access, &params)
    {
        return refuse(AuthError::Forbidden);
    }
    parts.extensions.insert(params);
    next.run(Request::from_parts(parts, body.unwrap_or_else(Body::empty)))
        .await
}

/// The naming resource a request names: `namespaceId` (default `public`), the group of
/// a grouped `serviceName` or `groupName` (default `DEFAULT_GROUP`), the plain service
/// name (every service when absent).
fn naming_of(p: &Params) -> String {
    let namespace = p.optional("namespaceId").unwrap_or("");
    let raw = p.optional("serviceName").unwrap_or("");
    let (group, service) = match raw.split_once(GROUP_SEPARATOR) {
        Some((g, s)) => (g, s),
        None => (p.optional("groupName").unwrap_or(DEFAULT_GROUP), raw),
    };
    naming_resource(namespace, group, service)
}

/// The config resource a request names: `tenant` (or `namespaceId`, or `namespace` as
/// import names it; `public` when empty; every namespace with `all=true`), `group`
/// (every group when absent), `dataId` (every config when absent).
fn config_of(p: &Params) -> String {
    let tenant = if p.boolean("all", false) {
        "*"
    } else {
        p.optional("tenant")
            .or_else(|| p.optional("namespaceId"))
            .or_else(|| p.optional("namespace"))
            .unwrap_or("")
    };
    config_resource(
        tenant,
        p.optional("group").unwrap_or(""),
        p.optional("dataId").unwrap_or(""),
    )
}

/// Whether `user` holds `access` for a request with `params`.
fn allows(user: &Principal, access: Access, params: &Params) -> bool {
    if user.admin {
        // An admin passes every check: no resource to work out.
        return true;
    }
    match access {
        Access::Public | Access::User => true,
        Access::Admin => false,
        Access::SelfOrAdmin => params.optional("username") == Some(user.username.as_str()),
        Access::Naming(action) => user.may(&naming_of(params), action),
        Access::Config(action) => user.may(&config_of(params), action),
        Access::ConfigListen => {
            // Unreadable lines are the handler's to refuse (400).
            let lines = params
                .raw("Listening-Configs")
                .and_then(|raw| parse_listening_configs(raw).ok())
                .unwrap_or_default();
            lines.iter().all(|e| {
                user.may(
                    &config_resource(&e.key.tenant, &e.group, &e.data_id),
                    Action::Read,
                )
            })
        }
    }
}
