//! Access control at the router: deny by default.
//!
//! Every route is registered through [`Routes`] with the [`Access`] it requires, so a
//! route without one cannot exist, and the table of `(path, method, access)` is kept
//! for tests to walk. Two layers enforce it:
//! * the gate ([`authenticate`]), around the whole router, fallback included: a request
//!   whose path is not exactly one of the few public paths must carry valid credentials
//!   (`Authorization: Bearer`, `accessToken`, or `username` and `password`, as Nacos
//!   accepts them) or is answered 403 before any routing — so path tricks (`//x`,
//!   `/./x`, `%2e`, `;x=`, other case) reach no handler unchecked;
//! * the check ([`authorize`]), on each route: the identity the gate found must hold the
//!   route's access — admin, or Nacos's `r`/`w` permission on the resource the request
//!   names (`<namespace>:<group>:naming/<service>`, `<tenant>:<group>:config/<dataId>`).
//!
//! Identity never comes from a header that names a user or a server (`User-Agent:
//! Nacos-Server`, `serverIdentity`): those are ignored. The gate reads the parameters
//! once (query and form body) and hands them to the handler, so a request's body is
//! read once.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
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

/// The identity a request was found to have, put in its extensions by the gate.
#[derive(Clone)]
pub enum Caller {
    /// Auth is off (allowed only on loopback): everything is allowed.
    AuthOff,
    /// A public path: no identity was asked for.
    Anonymous,
    /// A signed-in user.
    User(Arc<Principal>),
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
        let guarded = axum::routing::on(filter, handler).route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| authorize(access, req, next),
        ));
        self.table.push(RouteEntry {
            path,
            method,
            access,
        });
        self.open = Some((path, methods.merge(guarded)));
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

    /// The paths of which every method is public.
    pub fn public_paths(&self) -> HashSet<&'static str> {
        let mut public: HashSet<&'static str> = self
            .table
            .iter()
            .filter(|e| e.access == Access::Public)
            .map(|e| e.path)
            .collect();
        public.retain(|p| {
            self.table
                .iter()
                .filter(|e| e.path == *p)
                .all(|e| e.access == Access::Public)
        });
        public
    }

    /// The router and its table.
    pub fn finish(mut self) -> (Router<AppState>, Vec<RouteEntry>) {
        self.close();
        (self.router, self.table)
    }
}

/// What the gate needs.
pub struct Gate {
    /// The auth use cases.
    pub auth: Arc<AuthService>,
    /// `auth.enabled`.
    pub enabled: bool,
    /// Paths served without credentials, matched exactly.
    pub public: HashSet<&'static str>,
    /// Largest form body read, bytes (`http.max_body_bytes`).
    pub body_limit: usize,
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
    if !gate.enabled {
        let mut req = req;
        req.extensions_mut().insert(Caller::AuthOff);
        return next.run(req).await;
    }
    if gate.public.contains(req.uri().path()) {
        let mut req = req;
        req.extensions_mut().insert(Caller::Anonymous);
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
    parts.extensions.insert(Caller::User(principal));
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

/// The check: see the module docs. Fails closed when the gate did not run.
async fn authorize(access: Access, req: Request, next: Next) -> Response {
    let allowed = match (req.extensions().get::<Caller>(), access) {
        (Some(Caller::AuthOff), _) | (Some(_), Access::Public) => true,
        (Some(Caller::User(user)), access) => {
            let params = req.extensions().get::<Params>();
            match access {
                Access::Public | Access::User => true,
                Access::Admin => user.admin,
                Access::SelfOrAdmin => {
                    user.admin
                        || params.and_then(|p| p.optional("username")) == Some(&user.username)
                }
                Access::Naming(action) => params.is_some_and(|p| user.may(&naming_of(p), action)),
                Access::Config(action) => params.is_some_and(|p| user.may(&config_of(p), action)),
                Access::ConfigListen => params.is_some_and(|p| {
                    // Unreadable lines are the handler's to refuse (400).
                    let lines = p
                        .raw("Listening-Configs")
                        .and_then(|raw| parse_listening_configs(raw).ok())
                        .unwrap_or_default();
                    lines.iter().all(|e| {
                        user.may(
                            &config_resource(&e.key.tenant, &e.group, &e.data_id),
                            Action::Read,
                        )
                    })
                }),
            }
        }
        (Some(Caller::Anonymous), _) | (None, _) => false,
    };
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "text/plain;charset=UTF-8")],
            AuthError::Forbidden.to_string(),
        )
            .into_response();
    }
    next.run(req).await
}
