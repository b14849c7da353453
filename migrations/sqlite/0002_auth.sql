-- Nacos's auth schema (users, roles, permissions) with the same table and column
-- names as the MySQL one (migrations/mysql), in SQLite's types. Passwords are bcrypt.

CREATE TABLE IF NOT EXISTS users (
  username TEXT NOT NULL PRIMARY KEY,
  password TEXT NOT NULL,
  enabled BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS roles (
  username TEXT NOT NULL,
  role TEXT NOT NULL,
  UNIQUE (username, role)
);

CREATE TABLE IF NOT EXISTS permissions (
  role TEXT NOT NULL,
  resource TEXT NOT NULL,
  action TEXT NOT NULL,
  UNIQUE (role, resource, action)
);
