//! The Nacos Open API v1 routes: naming (`/nacos/v1/ns/...`), config
//! (`/nacos/v1/cs/...`), namespaces, auth and the console health probes, each with the
//! access it requires (see [`super::auth`]).

pub mod auth;
pub mod config;
pub mod health;
pub mod history;
pub mod instance;
pub mod namespace;
pub mod operator;
pub mod service;

use super::auth::{Access, Routes};
use crate::auth::permission::Action::{Read, Write};

/// Routes of the Nacos API v1, relative to the server root. Reads of naming and config
/// resources need Nacos's `r` permission on them, writes `w`; user, role and permission
/// management and namespace changes need an admin; only the health probes and login
/// are public.
pub fn routes() -> Routes {
    use super::internal;
    use Access::{
        Admin, Config, ConfigListen, ConfigNamespace, Naming, Peer, Public, SelfOrAdmin, User,
    };
    Routes::new()
        .at("/nacos/v1/ns/instance")
        .get(Naming(Read), instance::get_instance)
        .post(Naming(Write), instance::register_instance)
        .delete(Naming(Write), instance::deregister_instance)
        .put(Naming(Write), instance::update_instance)
        .patch(Naming(Write), instance::patch_instance)
        .at("/nacos/v1/ns/instance/list")
        .get(Naming(Read), instance::list_instances)
        .at("/nacos/v1/ns/instance/beat")
        .put(Naming(Write), instance::beat_instance)
        .at("/nacos/v1/ns/service")
        .get(Naming(Read), service::get_service)
        .post(Naming(Write), service::create_service)
        .delete(Naming(Write), service::remove_service)
        .put(Naming(Write), service::update_service)
        .at("/nacos/v1/ns/service/list")
        .get(Naming(Read), service::list_services)
        .at("/nacos/v1/ns/service/subscribers")
        .get(Naming(Read), service::list_subscribers)
        .at("/nacos/v1/ns/cluster")
        .put(Naming(Write), health::update_cluster)
        .at("/nacos/v1/ns/health")
        .put(Naming(Write), health::update_health)
        .at("/nacos/v1/ns/health/instance")
        .put(Naming(Write), health::update_health)
        .at("/nacos/v1/ns/health/checkers")
        .get(User, health::checkers)
        .at("/nacos/v1/ns/operator/metrics")
        .get(User, operator::metrics)
        .at("/nacos/v1/ns/ops/metrics")
        .get(User, operator::metrics)
        .at("/nacos/v1/cs/configs")
        .get(Config(Read), config::get_configs)
        .post(Config(Write), config::post_configs)
        .delete(Config(Write), config::delete_configs)
        .at("/nacos/v1/cs/configs/listener")
        .get(Config(Read), config::listeners_of_config)
        .post(ConfigListen, config::listener)
        .at("/nacos/v1/cs/configs/catalog")
        .get(Config(Read), config::catalog)
        .at("/nacos/v1/cs/listener")
        .get(ConfigNamespace(Read), config::listeners_of_ip)
        .at("/nacos/v1/cs/history")
        .get(Config(Read), history::history)
        .at("/nacos/v1/cs/history/previous")
        .get(Config(Read), history::previous)
        .at("/nacos/v1/cs/history/configs")
        .get(ConfigNamespace(Read), history::configs_of_namespace)
        .at("/nacos/v1/console/namespaces")
        .get(User, namespace::get_namespaces)
        .post(Admin, namespace::create_namespace)
        .put(Admin, namespace::update_namespace)
        .delete(Admin, namespace::delete_namespace)
        .at("/nacos/v1/console/health/liveness")
        .get(Public, operator::health)
        .at("/nacos/v1/console/health/readiness")
        .get(Public, operator::readiness)
        .at("/nacos/v1/core/cluster/nodes")
        .get(User, internal::cluster_nodes)
        .at("/nacos/v1/core/cluster/nodes/self")
        .get(User, internal::cluster_self)
        .at("/nacos/v1/core/cluster/self")
        .get(User, internal::cluster_self)
        .at(crate::cluster::PING_PATH)
        .get(Peer, internal::ping)
        .at(crate::naming::distro::paths::SYNC)
        .post(Peer, internal::distro_sync)
        .at(crate::naming::distro::paths::VERIFY)
        .post(Peer, internal::distro_verify)
        .at(crate::naming::distro::paths::SNAPSHOT)
        .get(Peer, internal::distro_snapshot)
        .at(crate::naming::distro::paths::FORWARD)
        .post(Peer, internal::distro_forward)
        .at(crate::config::peers::NOTIFY_PATH)
        .post(Peer, internal::config_notify)
        .at("/nacos/v1/auth/login")
        .post(Public, auth::login)
        .at("/nacos/v1/auth/users/login")
        .post(Public, auth::login)
        .at("/nacos/v1/auth/users")
        .get(Admin, auth::list_users)
        .post(Admin, auth::create_user)
        .put(SelfOrAdmin, auth::update_user)
        .delete(Admin, auth::delete_user)
        .at("/nacos/v1/auth/users/search")
        .get(Admin, auth::search_users)
        .at("/nacos/v1/auth/roles")
        .get(Admin, auth::list_roles)
        .post(Admin, auth::create_role)
        .delete(Admin, auth::delete_role)
        .at("/nacos/v1/auth/roles/search")
        .get(Admin, auth::search_roles)
        .at("/nacos/v1/auth/permissions")
        .get(Admin, auth::list_permissions)
        .post(Admin, auth::create_permission)
        .delete(Admin, auth::delete_permission)
}
