//! Proof of an access check, which the write doors of the use cases (the naming
//! dispatcher) ask for with every command (DESIGN §1). A proof names who passed the
//! gate; the door checks it against the resource the command really writes, so a
//! handler that parsed a request differently from the gate still cannot write where
//! its caller may not.

use std::sync::Arc;

use super::Principal;
use super::permission::{Action, naming_resource};

/// Who a write is made for. Only an authenticated [`Principal`] (which only
/// [`super::AuthService`] makes) gives a user proof; the other kinds are for a node
/// with auth off and for the server's own workers, and are found by grepping their
/// constructors.
#[derive(Clone, Debug)]
pub struct AccessProof(Kind);

#[derive(Clone, Debug)]
enum Kind {
    User(Arc<Principal>),
    AuthOff,
    System(&'static str),
    Anonymous,
}

impl AccessProof {
    /// A signed-in user, with their grants.
    pub fn user(principal: Arc<Principal>) -> Self {
        Self(Kind::User(principal))
    }

    /// A request to a node with auth off: everything is allowed, as Nacos does.
    pub fn auth_off() -> Self {
        Self(Kind::AuthOff)
    }

    /// One of the server's own workers (`worker` names it, e.g. `"probe"`), or a
    /// change replicated from a peer that already passed its own door.
    pub fn system(worker: &'static str) -> Self {
        Self(Kind::System(worker))
    }

    /// Nobody signed in: allowed nothing that needs a right.
    pub fn anonymous() -> Self {
        Self(Kind::Anonymous)
    }

    /// Whether the proof allows `action` on service `service` of `group` in
    /// `namespace` (the naming resource, see [`naming_resource`]). Builds the resource
    /// text only for a user without `ROLE_ADMIN`.
    pub fn allows_naming(
        &self,
        namespace: &str,
        group: &str,
        service: &str,
        action: Action,
    ) -> bool {
        match &self.0 {
            Kind::User(p) if p.admin => true,
            Kind::User(p) => p.may(&naming_resource(namespace, group, service), action),
            Kind::AuthOff | Kind::System(_) => true,
            Kind::Anonymous => false,
        }
    }

    /// Who the proof is for, for logs: a user name, `auth-off`, `system:<worker>` or
    /// `anonymous`.
    pub fn who(&self) -> String {
        match &self.0 {
            Kind::User(p) => p.username.clone(),
            Kind::AuthOff => "auth-off".into(),
            Kind::System(worker) => format!("system:{worker}"),
            Kind::Anonymous => "anonymous".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::permission::Grant;

    fn user(admin: bool, grants: &[(&str, &str)]) -> AccessProof {
        AccessProof::user(Arc::new(Principal {
            username: "dev".into(),
            admin,
            enabled: true,
            password_hash: String::new(),
            grants: grants.iter().map(|(r, a)| Grant::new(r, a)).collect(),
        }))
    }

    #[test]
    fn a_proof_allows_what_its_holder_may_do_and_no_more() {
        let dev = user(
            false,
            &[
                ("dev:*:naming/*", "rw"),
                ("public:DEFAULT_GROUP:naming/stock", "r"),
            ],
        );
        assert!(dev.allows_naming("dev", "g", "pay", Action::Write));
        assert!(!dev.allows_naming("prod", "g", "pay", Action::Write));
        assert!(dev.allows_naming("", "DEFAULT_GROUP", "stock", Action::Read));
        assert!(!dev.allows_naming("", "DEFAULT_GROUP", "stock", Action::Write));
        assert!(user(true, &[]).allows_naming("prod", "g", "pay", Action::Write));
        assert!(AccessProof::auth_off().allows_naming("prod", "g", "pay", Action::Write));
        assert!(AccessProof::system("probe").allows_naming("prod", "g", "pay", Action::Write));
        assert!(!AccessProof::anonymous().allows_naming("prod", "g", "pay", Action::Read));
        assert_eq!(AccessProof::system("probe").who(), "system:probe");
    }
}
