//! Access control at the router: deny by default.
//!
//! Every route is registered through [`Routes`] with the [`Access`] it requires, so a
//! route without one cannot exist, and the table of `(path, method, access)` is kept:
//! tests walk it, and the gate ([`Gate::check`]) enforces it. The gate runs before the
//! router for every request, unknown paths included:
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
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};

use super::AppState;
use super::error::ApiError;
use super::nacos_v1::config::listening_entries;
use super::params::Params;
use crate::auth::permission::{Action, config_resource, naming_resource};
use crate::auth::proof::AccessProof;
use crate::auth::{AuthError, AuthService, Credentials, Principal};
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
    /// `dataId` — or on every config of the namespace when the request reaches
    /// several configs (search, export, import into `namespace`, delete by ids).
    Config(Action),
    /// The action on every config of the request's `tenant` (every namespace with
    /// `all=true`): routes that list configs of a namespace.
    ConfigNamespace(Action),
    /// Read on the config of every line of the request's `Listening-Configs` (each
    /// line names its own tenant; the Java client sends no `tenant` parameter).
    ConfigListen,
    /// Another cluster member: the cluster secret in the
    /// [`crate::cluster::peer::SECRET_HEADER`] header, whether auth is on or off;
    /// no user passes. A node without members refuses every such call.
    Peer,
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

/// Who made a request, as the gate found them.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A signed-in user.
    User(Arc<Principal>),
    /// Auth is off: every caller may do everything, as an admin may.
    AuthOff,
    /// Nobody the gate knows (a public path): may do nothing that needs a right.
    Anonymous,
}

/// Marks the requests of a node with auth off, so handlers can tell "auth off" from
/// "nobody signed in".
#[derive(Clone, Copy, Debug)]
struct AuthIsOff;

impl Caller {
    /// The caller of a request the gate let through.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        if let Some(p) = extensions.get::<Arc<Principal>>() {
            Caller::User(p.clone())
        } else if extensions.get::<AuthIsOff>().is_some() {
            Caller::AuthOff
        } else {
            Caller::Anonymous
        }
    }

    /// Whether the caller holds `ROLE_ADMIN` (always with auth off, never anonymous).
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::User(p) => p.admin,
            Caller::AuthOff => true,
            Caller::Anonymous => false,
        }
    }

    /// The proof of the gate's check that write doors ask for (see
    /// [`crate::auth::proof`]).
    pub fn proof(&self) -> AccessProof {
        match self {
            Caller::User(p) => AccessProof::user(p.clone()),
            Caller::AuthOff => AccessProof::auth_off(),
            Caller::Anonymous => AccessProof::anonymous(),
        }
    }

    /// The signed-in user's name; `None` with auth off or anonymous.
    pub fn username(&self) -> Option<&str> {
        match self {
            Caller::User(p) => Some(p.username.as_str()),
            _ => None,
        }
    }

    /// Whether the caller may see namespace `id` (`""` or `public` for the public
    /// one): an admin sees every namespace, another user those their grants name.
    pub fn sees_namespace(&self, id: &str) -> bool {
        match self {
            Caller::User(p) => p.sees_namespace(id),
            Caller::AuthOff => true,
            Caller::Anonymous => false,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

/// What the gate needs.
pub struct Gate {
    auth: Arc<AuthService>,
    enabled: bool,
    /// Paths served without credentials, matched exactly.
    public: HashSet<&'static str>,
    /// Paths of peer calls (see [`Access::Peer`]).
    peer: HashSet<&'static str>,
    /// The cluster secret; `None` standalone.
    cluster_secret: Option<String>,
    /// The access of each path's methods, from the route table.
    access: HashMap<&'static str, Vec<(Method, Access)>>,
    /// Largest form body read once the caller is known (`http.max_body_bytes`).
    body_limit: usize,
    /// Largest form body read to find credentials in it, before the caller is known.
    anonymous_body_limit: usize,
}

/// Largest form body read before the caller is known, unless `http.max_body_bytes` is
/// smaller: room for a publish of 100 KiB of content, percent-encoded.
pub const ANONYMOUS_BODY_LIMIT: usize = 512 * 1024;

impl Gate {
    /// The gate of the routes in `table`: `enabled` is `auth.enabled`, `body_limit`
    /// `http.max_body_bytes` (the largest form body it reads).
    pub fn new(
        auth: Arc<AuthService>,
        enabled: bool,
        table: &[RouteEntry],
        body_limit: usize,
        cluster_secret: Option<String>,
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
        let peer = access
            .iter()
            .filter(|(_, methods)| methods.iter().any(|(_, a)| *a == Access::Peer))
            .map(|(path, _)| *path)
            .collect();
        Self {
            auth,
            enabled,
            public,
            peer,
            cluster_secret,
            access,
            body_limit,
            anonymous_body_limit: body_limit.min(ANONYMOUS_BODY_LIMIT),
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
    // The name exactly as sent: a padded `nacos ` is no other spelling of `nacos`.
    match (params.exact("username"), params.raw("password")) {
        (Some(username), Some(password)) if !password.is_empty() => {
            Some(Credentials::Password { username, password })
        }
        _ => None,
    }
}

/// A token from the headers or the query string alone (`Authorization: Bearer`, an
/// `accessToken` header or query parameter), when the request has one there; read
/// without indexing the whole query, which `Params::read` does next.
fn early_token(parts: &axum::http::request::Parts) -> Option<String> {
    if let Some(Credentials::Token(token)) = credentials(&parts.headers, &Params::default()) {
        return Some(token.to_string());
    }
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "accessToken")
        .map(|(_, v)| v.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The access the route table gives `method` on `path`; HEAD is GET's (axum answers
/// HEAD with the GET handler). `Err` with the status when there is no such route: 404
/// for an unknown path, 405 for an unknown method.
fn access_of(gate: &Gate, path: &str, method: &Method) -> Result<Access, StatusCode> {
    let method = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let methods = gate.access.get(path).ok_or(StatusCode::NOT_FOUND)?;
    methods
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, a)| *a)
        .ok_or(StatusCode::METHOD_NOT_ALLOWED)
}

impl Gate {
    /// The gate (see the module docs): the request, with its parameters attached when
    /// they were read, if its caller may make it; else the answer that refuses it.
    ///
    /// Runs before the router, in the HTTP service itself ([`super::serve`]) rather
    /// than as a middleware layer, so a request carries none of its state while the
    /// handler runs (a middleware future holds a clone of the inner service for every
    /// request: 5,000 held long polls would hold it 5,000 times).
    pub async fn check(&self, mut req: Request) -> Result<Request, Response> {
        if self.peer.contains(req.uri().path()) {
            let given = req
                .headers()
                .get(crate::cluster::peer::SECRET_HEADER)
                .map(|v| v.as_bytes());
            return match (given, &self.cluster_secret) {
                (Some(given), Some(secret))
                    if crate::cluster::peer::secret_matches(given, secret.as_bytes()) =>
                {
                    Ok(req)
                }
                _ => Err(refuse(AuthError::UserNotFound)),
            };
        }
        if !self.enabled {
            req.extensions_mut().insert(AuthIsOff);
            return Ok(req);
        }
        if self.public.contains(req.uri().path()) {
            return Ok(req);
        }
        Box::pin(admit(self, req)).await
    }
}

/// The request with its parameters attached when its caller may make it, else the
/// answer that refuses it.
async fn admit(gate: &Gate, req: Request) -> Result<Request, Response> {
    let (mut parts, body) = req.into_parts();
    // A token in the headers or the query is checked before any body is read, so an
    // unknown caller cannot make the server buffer a large body.
    let early = match early_token(&parts) {
        Some(token) => Some(
            gate.auth
                .authenticate(Credentials::Token(&token))
                .await
                .map_err(refuse)?,
        ),
        None => None,
    };
    let limit = if early.is_some() {
        gate.body_limit
    } else {
        gate.anonymous_body_limit
    };
    let (params, body) = Params::read(&parts, body, limit)
        .await
        .map_err(IntoResponse::into_response)?;
    let principal = match early {
        Some(p) => p,
        None => {
            let credentials = credentials(&parts.headers, &params)
                .ok_or_else(|| refuse(AuthError::UserNotFound))?;
            gate.auth.authenticate(credentials).await.map_err(refuse)?
        }
    };
    // Deny by default: a request reaches the router only for a route whose access the
    // caller holds.
    let access =
        access_of(gate, parts.uri.path(), &parts.method).map_err(IntoResponse::into_response)?;
    if !allows(&principal, access, &params) {
        return Err(refuse(AuthError::Forbidden));
    }
    parts.extensions.insert(params);
    parts.extensions.insert(principal);
    Ok(Request::from_parts(parts, body.unwrap_or_else(Body::empty)))
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

/// Whether a config request reaches several configs of its namespace rather than the
/// one its `dataId` and `group` name: a search, an export, an import, a delete by ids.
fn reaches_many_configs(p: &Params) -> bool {
    p.optional("search").is_some()
        || p.boolean("export", false)
        || p.boolean("exportV2", false)
        || p.boolean("import", false)
        || p.optional("delType") == Some("ids")
        || p.optional("ids").is_some()
}

/// The namespace a config request acts on, read from the very parameter its handler
/// reads: `namespace` for an import, `tenant` otherwise (`public` when empty); every
/// namespace with `all=true`.
fn tenant_of(p: &Params) -> &str {
    if p.boolean("all", false) {
        "*"
    } else if p.boolean("import", false) {
        p.optional("namespace").unwrap_or("")
    } else {
        p.optional("tenant").unwrap_or("")
    }
}

/// The config resource a request names: its namespace (see [`tenant_of`]), `group`
/// and `dataId` (every one when absent, or when the request reaches many configs).
fn config_of(p: &Params) -> String {
    if reaches_many_configs(p) {
        return config_resource(tenant_of(p), "", "");
    }
    config_resource(
        tenant_of(p),
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
        Access::Admin | Access::Peer => false,
        Access::SelfOrAdmin => params.optional("username") == Some(user.username.as_str()),
        Access::Naming(action) => user.may(&naming_of(params), action),
        Access::Config(action) => user.may(&config_of(params), action),
        Access::ConfigNamespace(action) => {
            user.may(&config_resource(tenant_of(params), "", ""), action)
        }
        Access::ConfigListen => {
            // The lines exactly as the handler reads them; none or unreadable ones
            // allow nothing.
            match params.raw("Listening-Configs").map(listening_entries) {
                Some(Ok(lines)) if !lines.is_empty() => lines.iter().all(|e| {
                    user.may(
                        &config_resource(&e.key.tenant, &e.group, &e.data_id),
                        Action::Read,
                    )
                }),
                _ => false,
            }
        }
    }
}
