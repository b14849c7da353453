//! Namespaces: `tenant_info` rows (`kp` is always `"1"`, times in milliseconds, as
//! Nacos `ExternalOtherPersistServiceImpl`). The public namespace is not stored.

use super::{ConfigStore, StoreError, opt_text, with_pool};
pub use crate::model::config::NamespaceRow;

impl ConfigStore {
    /// Every custom namespace, oldest first.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        with_pool!(self, read, pool => {
            let rows = sqlx::query(
                "SELECT tenant_id, tenant_name, tenant_desc FROM tenant_info WHERE kp = '1' ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let id: Option<String> = opt_text(&row, "tenant_id")?;
                let name: Option<String> = opt_text(&row, "tenant_name")?;
                out.push(NamespaceRow {
                    id: id.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    desc: opt_text(&row, "tenant_desc")?,
                });
            }
            Ok(out)
        })
    }

    /// One custom namespace.
    pub async fn namespace(&self, id: &str) -> Result<Option<NamespaceRow>, StoreError> {
        Ok(self.namespaces().await?.into_iter().find(|n| n.id == id))
    }

    /// Creates a namespace; `false` when the id is taken.
    pub async fn create_namespace(&self, ns: &NamespaceRow) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let taken = sqlx::query("SELECT id FROM tenant_info WHERE kp = '1' AND tenant_id = ?")
                .bind(&ns.id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if taken {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO tenant_info (kp, tenant_id, tenant_name, tenant_desc, create_source, \
                 gmt_create, gmt_modified) VALUES ('1', ?, ?, ?, 'nacos', ?, ?)",
            )
            .bind(&ns.id)
            .bind(&ns.name)
            .bind(&ns.desc)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Renames a namespace and sets its description; `false` when it does not exist.
    pub async fn update_namespace(&self, ns: &NamespaceRow) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self, write, pool => {
            let done = sqlx::query(
                "UPDATE tenant_info SET tenant_name = ?, tenant_desc = ?, gmt_modified = ? \
                 WHERE kp = '1' AND tenant_id = ?",
            )
            .bind(&ns.name)
            .bind(&ns.desc)
            .bind(now)
            .bind(&ns.id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Deletes a namespace (its configs stay, as Nacos 1.x).
    pub async fn delete_namespace(&self, id: &str) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let done = sqlx::query("DELETE FROM tenant_info WHERE kp = '1' AND tenant_id = ?")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
