//! Users, roles, permissions and tokens (Nacos's auth plugin, `shared/nacos-api.md`
//! §6): who a request comes from, and whether they may do what it asks.
//!
//! Owns an in-memory table of every user with their roles' grants, loaded from the
//! config store at start and replaced after each write to it (writes are serialized),
//! so checking a request never touches the database. Passwords are bcrypt hashes
//! (`$2a$`, cost 10, as Nacos writes them); a username and password sent on every
//! request (as the Node.js client does) are checked with bcrypt once and then
//! remembered, as a keyed hash, for `auth.credential_cache_secs`.
//!
//! Invariants: identity comes only from a verified token or a checked password, never
//! from a header that names a user or a server; the admin role `ROLE_ADMIN` passes
//! every check; nobody holds the password `nacos` of Nacos's default admin.

pub mod permission;
pub mod proof;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{info, warn};

use crate::settings::AuthSettings;
use crate::storage::auth::{AuthRows, PermissionRow, RoleRow, UserRow};
use crate::storage::{ConfigStore, StoreError};
use permission::{Action, Grant};
use token::{KeyError, KeySource, TokenError, TokenKeys};

/// Nacos's global admin role.
pub const ADMIN_ROLE: &str = "ROLE_ADMIN";
/// Nacos's admin user name.
pub const ADMIN_USER: &str = "nacos";
/// The password Nacos's schema gives its admin user; never accepted.
const NACOS_DEFAULT_PASSWORD: &str = "nacos";
/// bcrypt cost of new hashes (Nacos's `BCryptPasswordEncoder` default).
const BCRYPT_COST: u32 = 10;
/// Longest password: bcrypt reads 72 bytes.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Shortest password Nacre sets.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Most remembered username/password checks.
const CREDENTIAL_CACHE_MAX: usize = 10_000;

/// Errors of the auth use cases. The first four are Nacos's 403 answers.
#[derive(Debug, Error)]
pub enum AuthError {
    /// No such user, a disabled one, a wrong password, or no credentials at all.
    #[error("user not found!")]
    UserNotFound,
    /// A token that does not verify.
    #[error("token invalid!")]
    TokenInvalid,
    /// A token past its expiry.
    #[error("token expired!")]
    TokenExpired,
    /// A known user without the permission.
    #[error("authorization failed!")]
    Forbidden,
    /// Bad input; the message names the field (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The database failed (HTTP 500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => AuthError::TokenInvalid,
            TokenError::Expired => AuthError::TokenExpired,
        }
    }
}

/// Why auth could not start.
#[derive(Debug, Error)]
pub enum AuthStartError {
    /// The token key is refused or cannot be had.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The users could not be read or the admin created.
    #[error("cannot load users")]
    Store(#[from] StoreError),
    /// The admin password given is refused.
    #[error("NACRE_ADMIN_PASSWORD is refused: {0}")]
    AdminPassword(String),
    /// An admin with Nacos's default password `nacos` and no new one given.
    #[error(
        "the user 'nacos' has Nacos's default password 'nacos'; start once with \
         NACRE_ADMIN_PASSWORD set to a password of your own to replace it"
    )]
    DefaultAdminPassword,
    /// The generated admin password could not be written.
    #[error("cannot write the admin password file {path}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A known user and what they may do.
#[derive(Debug)]
pub struct Principal {
    /// Login name.
    pub username: String,
    /// Holds `ROLE_ADMIN`.
    pub admin: bool,
    enabled: bool,
    password_hash: String,
    grants: Vec<Grant>,
}

impl Principal {
    /// Whether this user may do `action` on `resource` (see [`permission`]).
    pub fn may(&self, resource: &str, action: Action) -> bool {
        self.admin || self.grants.iter().any(|g| g.allows(resource, action))
    }

    /// Whether this user may see namespace `id` (`""` is `public`): an admin sees
    /// every one, another user those a grant of theirs names.
    pub fn sees_namespace(&self, id: &str) -> bool {
        self.admin || self.grants.iter().any(|g| g.covers_namespace(id))
    }
}

/// A successful login.
#[derive(Debug)]
pub struct Login {
    /// The token.
    pub access_token: String,
    /// Seconds it lives.
    pub token_ttl: u64,
    /// The user holds `ROLE_ADMIN`.
    pub global_admin: bool,
    /// The user.
    pub username: String,
}

/// Credentials a request carries.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// `Authorization: Bearer` or `accessToken`.
    Token(&'a str),
    /// `username` and `password` parameters.
    Password {
        /// The user name.
        username: &'a str,
        /// The password.
        password: &'a str,
    },
}

/// What [`AuthService::start`] did on this start.
#[derive(Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// Where the token key came from.
    pub key_source: KeySource,
    /// The admin password file written, when an admin was created with a generated
    /// password.
    pub admin_password_file: Option<PathBuf>,
}

/// The auth use cases. Share it in an `Arc`.
pub struct AuthService {
    store: ConfigStore,
    keys: TokenKeys,
    /// Keyed-hash key of the credential cache (a process secret).
    cache_key: [u8; 32],
    credential_ttl: Duration,
    principals: ArcSwap<HashMap<String, Arc<Principal>>>,
    /// Remembered password checks: keyed hash of (username, password) → (user, until,
    /// the password hash it was checked against — a changed password misses).
    credentials: Mutex<HashMap<[u8; 32], (String, Instant, String)>>,
    /// A bcrypt hash of a random password: unknown users are checked against it, so a
    /// wrong name takes as long as a wrong password.
    dummy_hash: String,
    /// Tokens already verified → (user, expiry in epoch seconds), so a client that
    /// sends its token on every request pays the signature check once.
    tokens: Mutex<HashMap<String, (String, u64)>>,
    writes: tokio::sync::Mutex<()>,
}

fn now_secs() -> u64 {
    crate::model::now_millis() / 1000
}

/// A bcrypt hash in Nacos's `$2a$` form.
fn hash_password(password: &str) -> Result<String, AuthError> {
    bcrypt::hash_with_result(password, BCRYPT_COST)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        .map_err(|e| AuthError::Invalid(format!("Param 'password' cannot be hashed: {e}")))
}

/// Checks a new password: 8 to 72 bytes, not Nacos's default. Errors name `field`.
pub fn check_new_password(field: &str, password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::Invalid(format!(
            "Param '{field}' is too short: at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::Invalid(format!(
            "Param '{field}' is too long: at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password == NACOS_DEFAULT_PASSWORD {
        return Err(AuthError::Invalid(format!(
            "Param '{field}' must not be Nacos's default password"
        )));
    }
    Ok(())
}

/// Checks a user or role name: 1 to 50 characters (the `users` and `roles` columns),
/// no whitespace or control characters. Errors name `field`.
pub fn check_name(field: &str, name: &str) -> Result<(), AuthError> {
    if name.is_empty()
        || name.chars().count() > 50
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AuthError::Invalid(format!(
            "Param '{field}' is illegal, it must be 1-50 characters without spaces: {name:?}"
        )));
    }
    Ok(())
}

/// bcrypt checks running at once: each takes tens of milliseconds of CPU, so a flood
/// of wrong passwords waits here instead of taking every core.
static BCRYPT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// Longest wait for a bcrypt slot; past it the check fails (under a flood of password
/// guesses, logins fail fast instead of queueing without end).
const BCRYPT_WAIT: Duration = Duration::from_secs(2);

/// bcrypt verification, off the async threads and at most [`BCRYPT_SLOTS`] at once.
async fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(Ok(_slot)) = tokio::time::timeout(BCRYPT_WAIT, BCRYPT_SLOTS.acquire()).await else {
        return false;
    };
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

fn build_principals(rows: &AuthRows) -> HashMap<String, Arc<Principal>> {
    let mut roles_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &rows.roles {
        roles_of.entry(&r.username).or_default().push(&r.role);
    }
    let mut grants_of: HashMap<&str, Vec<Grant>> = HashMap::new();
    for p in &rows.permissions {
        grants_of
            .entry(&p.role)
            .or_default()
            .push(Grant::new(&p.resource, &p.action));
    }
    rows.users
        .iter()
        .map(|u| {
            let roles = roles_of
                .get(u.username.as_str())
                .cloned()
                .unwrap_or_default();
            let principal = Principal {
                username: u.username.clone(),
                admin: roles.contains(&ADMIN_ROLE),
                enabled: u.enabled,
                password_hash: u.password_hash.clone(),
                grants: roles
                    .iter()
                    .flat_map(|r| grants_of.get(r).cloned().unwrap_or_default())
                    .collect(),
            };
            (u.username.clone(), Arc::new(principal))
        })
        .collect()
}

impl AuthService {
    /// Loads the token key (see [`token`]) and the users; on a database without an
    /// admin, creates user `nacos` with role `ROLE_ADMIN` and the password of
    /// `settings.admin_password` (`NACRE_ADMIN_PASSWORD`) or a generated one, which is
    /// written to `<data_dir>/auth/admin.password` (mode 0600) and logged once. Refuses
    /// to start while user `nacos` has Nacos's default password, unless a new one is
    /// given, which then replaces it.
    pub async fn start(
        store: ConfigStore,
        settings: &AuthSettings,
        data_dir: &Path,
    ) -> Result<(Self, Bootstrap), AuthStartError> {
        let dir = data_dir.join("auth");
        let (secret, key_source) = token::load_key(&settings.token_key, &dir)?;
        if key_source == KeySource::Generated {
            info!(path = %dir.join("token.key").display(), "generated the token signing key");
        }
        if let Some(p) = &settings.admin_password {
            check_new_password("NACRE_ADMIN_PASSWORD", p)
                .map_err(|e| AuthStartError::AdminPassword(e.to_string()))?;
        }
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut cache_key);
        let dummy_hash = hash_password(&generate_password())
            .map_err(|e| AuthStartError::AdminPassword(e.to_string()))?;
        let service = Self {
            store,
            keys: TokenKeys::new(&secret, settings.token_ttl_secs),
            cache_key,
            credential_ttl: Duration::from_secs(settings.credential_cache_secs),
            principals: ArcSwap::from_pointee(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            dummy_hash,
            tokens: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
        };
        let admin_password_file = service
            .bootstrap_admin(settings.admin_password.as_deref(), &dir)
            .await?;
        service.reload().await?;
        Ok((
            service,
            Bootstrap {
                key_source,
                admin_password_file,
            },
        ))
    }

    async fn bootstrap_admin(
        &self,
        given: Option<&str>,
        dir: &Path,
    ) -> Result<Option<PathBuf>, AuthStartError> {
        let rows = self.store.auth_rows().await?;
        if let Some(user) = rows.users.iter().find(|u| u.username == ADMIN_USER)
            && verify_password(NACOS_DEFAULT_PASSWORD, &user.password_hash).await
        {
            let Some(new) = given else {
                return Err(AuthStartError::DefaultAdminPassword);
            };
            let hash =
                hash_password(new).map_err(|e| AuthStartError::AdminPassword(e.to_string()))?;
            self.store.update_password(ADMIN_USER, &hash).await?;
            warn!("replaced Nacos's default password of user 'nacos' with NACRE_ADMIN_PASSWORD");
        }
        let has_admin = rows.roles.iter().any(|r| r.role == ADMIN_ROLE);
        if has_admin {
            return Ok(None);
        }
        let (password, file) = match given {
            Some(p) => (p.to_string(), None),
            None => {
                let generated = generate_password();
                let path = dir.join("admin.password");
                token::write_secret(&path, &generated).map_err(|source| {
                    AuthStartError::PasswordFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                (generated, Some(path))
            }
        };
        let hash =
            hash_password(&password).map_err(|e| AuthStartError::AdminPassword(e.to_string()))?;
        let created = self
            .store
            .create_user(&UserRow {
                username: ADMIN_USER.into(),
                password_hash: hash.clone(),
                enabled: true,
            })
            .await?;
        if !created {
            if let Some(path) = &file {
                // Another member sharing the database created the admin at the same
                // time: its generated password stands, and this one is discarded.
                let _ = std::fs::remove_file(path);
                info!(
                    user = ADMIN_USER,
                    "another member created the admin user first; its password is in that member's data directory"
                );
                self.store
                    .bind_role(&RoleRow {
                        role: ADMIN_ROLE.into(),
                        username: ADMIN_USER.into(),
                    })
                    .await?;
                return Ok(None);
            }
            self.store.update_password(ADMIN_USER, &hash).await?;
        }
        self.store
            .bind_role(&RoleRow {
                role: ADMIN_ROLE.into(),
                username: ADMIN_USER.into(),
            })
            .await?;
        match &file {
            Some(path) => warn!(
                user = ADMIN_USER,
                password = %password,
                file = %path.display(),
                "created the admin user with a generated password (shown once; also in the file)"
            ),
            None => info!(
                user = ADMIN_USER,
                "created the admin user with NACRE_ADMIN_PASSWORD"
            ),
        }
        Ok(file)
    }

    /// Re-reads the tables into the in-memory table. Remembered password checks stay:
    /// each is tied to the hash it was checked against.
    async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.auth_rows().await?;
        self.principals.store(Arc::new(build_principals(&rows)));
        Ok(())
    }

    fn principal(&self, username: &str) -> Option<Arc<Principal>> {
        self.principals.load().get(username).cloned()
    }

    /// Checks a username and password (Nacos `/v1/auth/users/login`) and mints a token.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login, AuthError> {
        let principal = self.check_password(username, password).await?;
        Ok(Login {
            access_token: self.keys.mint(&principal.username, now_secs()),
            token_ttl: self.keys.ttl_secs(),
            global_admin: principal.admin,
            username: principal.username.clone(),
        })
    }

    async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Arc<Principal>, AuthError> {
        // An unknown or disabled user is checked against a dummy hash, so the answer
        // takes as long as for a wrong password.
        let principal = self.principal(username).filter(|p| p.enabled);
        let hash = principal
            .as_ref()
            .map(|p| p.password_hash.as_str())
            .unwrap_or(&self.dummy_hash);
        let matches = !password.is_empty()
            && password.len() <= MAX_PASSWORD_BYTES
            && verify_password(password, hash).await;
        match principal {
            Some(p) if matches => Ok(p),
            _ => Err(AuthError::UserNotFound),
        }
    }

    fn credential_digest(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((username.len() as u64).to_le_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Who the credentials belong to.
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Arc<Principal>, AuthError> {
        match credentials {
            Credentials::Token(token) => {
                let now = now_secs();
                let known = self
                    .tokens
                    .lock()
                    .get(token)
                    .filter(|(_, exp)| *exp > now)
                    .map(|(user, _)| user.clone());
                let username = match known {
                    Some(user) => user,
                    None => {
                        let (user, exp) = self.keys.verify(token, now)?;
                        let mut cache = self.tokens.lock();
                        if cache.len() >= CREDENTIAL_CACHE_MAX {
                            cache.retain(|_, (_, exp)| *exp > now);
                            if cache.len() >= CREDENTIAL_CACHE_MAX {
                                cache.clear();
                            }
                        }
                        cache.insert(token.to_string(), (user.clone(), exp));
                        user
                    }
                };
                self.principal(&username)
                    .filter(|p| p.enabled)
                    .ok_or(AuthError::UserNotFound)
            }
            Credentials::Password { username, password } => {
                let digest = self.credential_digest(username, password);
                let now = Instant::now();
                let remembered = self
                    .credentials
                    .lock()
                    .get(&digest)
                    .filter(|(_, until, _)| *until > now)
                    .map(|(user, _, hash)| (user.clone(), hash.clone()));
                if let Some(p) = remembered.and_then(|(user, hash)| {
                    self.principal(&user)
                        .filter(|p| p.enabled && p.password_hash == hash)
                }) {
                    return Ok(p);
                }
                let principal = self.check_password(username, password).await?;
                let mut cache = self.credentials.lock();
                if cache.len() >= CREDENTIAL_CACHE_MAX {
                    cache.retain(|_, (_, until, _)| *until > now);
                    if cache.len() >= CREDENTIAL_CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(
                    digest,
                    (
                        principal.username.clone(),
                        now + self.credential_ttl,
                        principal.password_hash.clone(),
                    ),
                );
                Ok(principal)
            }
        }
    }

    /// Every user, sorted by name, without password hashes.
    pub fn usernames(&self) -> Vec<String> {
        let mut names: Vec<String> = self.principals.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// Every role binding, sorted.
    pub async fn roles(&self) -> Result<Vec<RoleRow>, AuthError> {
        Ok(self.store.auth_rows().await?.roles)
    }

    /// Every permission, sorted.
    pub async fn permissions(&self) -> Result<Vec<PermissionRow>, AuthError> {
        Ok(self.store.auth_rows().await?.permissions)
    }

    /// Creates a user (Nacos `POST /v1/auth/users`). Errors: a bad name or password,
    /// or a taken name (`user 'x' already exist!`).
    pub async fn create_user(&self, username: &str, password: &str) -> Result<(), AuthError> {
        check_name("username", username)?;
        check_new_password("password", password)?;
        let hash = hash_password(password)?;
        let _w = self.writes.lock().await;
        let created = self
            .store
            .create_user(&UserRow {
                username: username.into(),
                password_hash: hash,
                enabled: true,
            })
            .await?;
        if !created {
            return Err(AuthError::Invalid(format!(
                "user '{username}' already exist!"
            )));
        }
        self.reload().await?;
        Ok(())
    }

    /// Sets a user's password. Errors: a bad password, or no such user.
    pub async fn update_password(&self, username: &str, password: &str) -> Result<(), AuthError> {
        check_new_password("newPassword", password)?;
        let hash = hash_password(password)?;
        let _w = self.writes.lock().await;
        if !self.store.update_password(username, &hash).await? {
            return Err(AuthError::Invalid(format!("user {username} not exist!")));
        }
        self.reload().await?;
        Ok(())
    }

    /// Deletes a user and its role bindings. An admin cannot be deleted (Nacos:
    /// `cannot delete admin: x`).
    pub async fn delete_user(&self, username: &str) -> Result<(), AuthError> {
        let _w = self.writes.lock().await;
        // MySQL compares names without case: `NACOS` would delete `nacos`.
        let is_admin = self
            .principals
            .load()
            .values()
            .any(|p| p.admin && p.username.eq_ignore_ascii_case(username));
        if is_admin {
            return Err(AuthError::Invalid(format!(
                "cannot delete admin: {username}"
            )));
        }
        if !self.store.delete_user(username).await? {
            return Err(AuthError::Invalid(format!("user {username} not exist!")));
        }
        self.reload().await?;
        Ok(())
    }

    /// Gives a user a role (Nacos `POST /v1/auth/roles`). `ROLE_ADMIN` cannot be given
    /// through the API, as in Nacos 2.x; the user must exist.
    pub async fn bind_role(&self, role: &str, username: &str) -> Result<(), AuthError> {
        check_name("role", role)?;
        if role == ADMIN_ROLE {
            return Err(AuthError::Invalid(format!(
                "role '{ADMIN_ROLE}' is not permitted to create!"
            )));
        }
        let _w = self.writes.lock().await;
        if self.principal(username).is_none() {
            return Err(AuthError::Invalid(format!("user '{username}' not found!")));
        }
        self.store
            .bind_role(&RoleRow {
                role: role.into(),
                username: username.into(),
            })
            .await?;
        self.reload().await?;
        Ok(())
    }

    /// Takes a role from one user, or from everyone. `ROLE_ADMIN` stays.
    pub async fn unbind_role(&self, role: &str, username: Option<&str>) -> Result<(), AuthError> {
        if role == ADMIN_ROLE {
            return Err(AuthError::Invalid(format!(
                "cannot delete role: {ADMIN_ROLE}"
            )));
        }
        let _w = self.writes.lock().await;
        self.store.unbind_role(role, username).await?;
        self.reload().await?;
        Ok(())
    }

    /// Grants a role `action` (`r`, `w` or `rw`) on `resource` (Nacos `POST
    /// /v1/auth/permissions`); the role must be held by someone.
    pub async fn add_permission(&self, p: &PermissionRow) -> Result<(), AuthError> {
        check_permission(p)?;
        let _w = self.writes.lock().await;
        let rows = self.store.auth_rows().await?;
        if !rows.roles.iter().any(|r| r.role == p.role) {
            return Err(AuthError::Invalid(format!("role {} not found!", p.role)));
        }
        self.store.add_permission(p).await?;
        self.reload().await?;
        Ok(())
    }

    /// Removes a permission.
    pub async fn delete_permission(&self, p: &PermissionRow) -> Result<(), AuthError> {
        let _w = self.writes.lock().await;
        self.store.delete_permission(p).await?;
        self.reload().await?;
        Ok(())
    }
}

/// Checks a permission row: a role name, a resource of at most 128 characters without
/// whitespace, and an action of `r`, `w` or `rw`. Errors name the field.
fn check_permission(p: &PermissionRow) -> Result<(), AuthError> {
    check_name("role", &p.role)?;
    if p.resource.is_empty()
        || p.resource.chars().count() > 128
        || p.resource
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AuthError::Invalid(format!(
            "Param 'resource' is illegal, it must be 1-128 characters without spaces: {:?}",
            p.resource
        )));
    }
    if !matches!(p.action.as_str(), "r" | "w" | "rw") {
        return Err(AuthError::Invalid(format!(
            "Param 'action' is illegal, it must be r, w or rw: {:?}",
            p.action
        )));
    }
    Ok(())
}

/// A password of 24 letters and digits from the OS-seeded generator.
fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
