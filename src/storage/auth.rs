//! Users, role bindings and permissions: Nacos's `users`, `roles` and `permissions`
//! tables, so an existing Nacos database's accounts work. Passwords are stored as the
//! bcrypt hashes the caller gives; nothing here checks them or decides who may do what.

use super::{ConfigStore, StoreError, opt_text, with_pool};
pub use crate::model::PermissionRow;

/// A `users` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// Login name.
    pub username: String,
    /// bcrypt hash (`$2a$10$...`).
    pub password_hash: String,
    /// A disabled user cannot log in.
    pub enabled: bool,
}

/// A `roles` row: `username` holds `role`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleRow {
    /// The role name, e.g. `ROLE_ADMIN`.
    pub role: String,
    /// The user holding it.
    pub username: String,
}

/// Everything of the three tables, as loaded at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRows {
    /// Every user.
    pub users: Vec<UserRow>,
    /// Every role binding.
    pub roles: Vec<RoleRow>,
    /// Every permission.
    pub permissions: Vec<PermissionRow>,
}

fn text<R: sqlx::Row>(row: &R, column: &str) -> Result<String, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(opt_text(row, column)?.unwrap_or_default())
}

impl ConfigStore {
    /// Reads the three tables.
    pub async fn auth_rows(&self) -> Result<AuthRows, StoreError> {
        use sqlx::Row;
        with_pool!(self, read, pool => {
            let mut out = AuthRows::default();
            for row in sqlx::query("SELECT username, password, enabled FROM users ORDER BY username")
                .fetch_all(pool)
                .await?
            {
                out.users.push(UserRow {
                    username: text(&row, "username")?,
                    password_hash: text(&row, "password")?,
                    enabled: row.try_get::<bool, _>("enabled")?,
                });
            }
            for row in sqlx::query("SELECT role, username FROM roles ORDER BY role, username")
                .fetch_all(pool)
                .await?
            {
                out.roles.push(RoleRow {
                    role: text(&row, "role")?,
                    username: text(&row, "username")?,
                });
            }
            for row in sqlx::query(
                "SELECT role, resource, action FROM permissions ORDER BY role, resource, action",
            )
            .fetch_all(pool)
            .await?
            {
                out.permissions.push(PermissionRow {
                    role: text(&row, "role")?,
                    resource: text(&row, "resource")?,
                    action: text(&row, "action")?,
                });
            }
            Ok(out)
        })
    }

    /// Adds a user; `false` when the name is taken.
    pub async fn create_user(&self, user: &UserRow) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let taken = sqlx::query("SELECT username FROM users WHERE username = ?")
                .bind(&user.username)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if taken {
                return Ok(false);
            }
            sqlx::query("INSERT INTO users (username, password, enabled) VALUES (?, ?, ?)")
                .bind(&user.username)
                .bind(&user.password_hash)
                .bind(user.enabled)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Replaces a user's password hash; `false` when the user does not exist.
    pub async fn update_password(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let done = sqlx::query("UPDATE users SET password = ? WHERE username = ?")
                .bind(hash)
                .bind(username)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Deletes a user and the roles it holds; `false` when it did not exist.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM users WHERE username = ?")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM roles WHERE username = ?")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Gives `username` the role; `false` when it holds it already.
    pub async fn bind_role(&self, role: &RoleRow) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let held = sqlx::query("SELECT role FROM roles WHERE role = ? AND username = ?")
                .bind(&role.role)
                .bind(&role.username)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if held {
                return Ok(false);
            }
            sqlx::query("INSERT INTO roles (role, username) VALUES (?, ?)")
                .bind(&role.role)
                .bind(&role.username)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Removes a role from one user, or from everyone with `username = None`; returns
    /// how many bindings went.
    pub async fn unbind_role(&self, role: &str, username: Option<&str>) -> Result<u64, StoreError> {
        with_pool!(self, write, pool => {
            let done = match username {
                Some(user) => {
                    sqlx::query("DELETE FROM roles WHERE role = ? AND username = ?")
                        .bind(role)
                        .bind(user)
                        .execute(pool)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM roles WHERE role = ?")
                        .bind(role)
                        .execute(pool)
                        .await?
                }
            };
            Ok(done.rows_affected())
        })
    }

    /// Adds a permission; `false` when it exists.
    pub async fn add_permission(&self, p: &PermissionRow) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let exists = sqlx::query(
                "SELECT role FROM permissions WHERE role = ? AND resource = ? AND action = ?",
            )
            .bind(&p.role)
            .bind(&p.resource)
            .bind(&p.action)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if exists {
                return Ok(false);
            }
            sqlx::query("INSERT INTO permissions (role, resource, action) VALUES (?, ?, ?)")
                .bind(&p.role)
                .bind(&p.resource)
                .bind(&p.action)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Removes a permission; `false` when it did not exist.
    pub async fn delete_permission(&self, p: &PermissionRow) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let done = sqlx::query(
                "DELETE FROM permissions WHERE role = ? AND resource = ? AND action = ?",
            )
            .bind(&p.role)
            .bind(&p.resource)
            .bind(&p.action)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
