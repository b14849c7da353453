-- Nacos's config schema with the same table and column names as the MySQL one
-- (migrations/mysql), in SQLite's types. Comparisons are binary (case-sensitive),
-- as Nacos's utf8_bin.

CREATE TABLE IF NOT EXISTS config_info (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_id TEXT NOT NULL,
  group_id TEXT,
  content TEXT NOT NULL,
  md5 TEXT,
  gmt_create DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  gmt_modified DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  src_user TEXT,
  src_ip TEXT,
  app_name TEXT,
  tenant_id TEXT DEFAULT '',
  c_desc TEXT,
  c_use TEXT,
  effect TEXT,
  type TEXT,
  c_schema TEXT,
  encrypted_data_key TEXT NOT NULL DEFAULT '',
  UNIQUE (data_id, group_id, tenant_id)
);

CREATE TABLE IF NOT EXISTS config_info_beta (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_id TEXT NOT NULL,
  group_id TEXT NOT NULL,
  app_name TEXT,
  content TEXT NOT NULL,
  beta_ips TEXT,
  md5 TEXT,
  gmt_create DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  gmt_modified DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  src_user TEXT,
  src_ip TEXT,
  tenant_id TEXT DEFAULT '',
  encrypted_data_key TEXT NOT NULL DEFAULT '',
  UNIQUE (data_id, group_id, tenant_id)
);

CREATE TABLE IF NOT EXISTS config_info_tag (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data_id TEXT NOT NULL,
  group_id TEXT NOT NULL,
  tenant_id TEXT DEFAULT '',
  tag_id TEXT NOT NULL,
  app_name TEXT,
  content TEXT NOT NULL,
  md5 TEXT,
  gmt_create DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  gmt_modified DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  src_user TEXT,
  src_ip TEXT,
  UNIQUE (data_id, group_id, tenant_id, tag_id)
);

CREATE TABLE IF NOT EXISTS config_tags_relation (
  id INTEGER NOT NULL,
  tag_name TEXT NOT NULL,
  tag_type TEXT,
  data_id TEXT NOT NULL,
  group_id TEXT NOT NULL,
  tenant_id TEXT DEFAULT '',
  nid INTEGER PRIMARY KEY AUTOINCREMENT,
  UNIQUE (id, tag_name, tag_type)
);
CREATE INDEX IF NOT EXISTS idx_tags_tenant_id ON config_tags_relation (tenant_id);

CREATE TABLE IF NOT EXISTS his_config_info (
  id INTEGER NOT NULL,
  nid INTEGER PRIMARY KEY AUTOINCREMENT,
  data_id TEXT NOT NULL,
  group_id TEXT NOT NULL,
  app_name TEXT,
  content TEXT NOT NULL,
  md5 TEXT,
  gmt_create DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  gmt_modified DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  src_user TEXT,
  src_ip TEXT,
  op_type TEXT,
  tenant_id TEXT DEFAULT '',
  encrypted_data_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS idx_his_gmt_create ON his_config_info (gmt_create);
CREATE INDEX IF NOT EXISTS idx_his_gmt_modified ON his_config_info (gmt_modified);
CREATE INDEX IF NOT EXISTS idx_his_did ON his_config_info (data_id);

CREATE TABLE IF NOT EXISTS tenant_info (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kp TEXT NOT NULL,
  tenant_id TEXT DEFAULT '',
  tenant_name TEXT DEFAULT '',
  tenant_desc TEXT,
  create_source TEXT,
  gmt_create INTEGER NOT NULL,
  gmt_modified INTEGER NOT NULL,
  UNIQUE (kp, tenant_id)
);
