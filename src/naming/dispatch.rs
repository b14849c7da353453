//! The one write door of naming (DESIGN §1): HTTP, the health workers, and later gRPC
//! and the console submit [`NamingCommand`]s here with an [`AccessProof`]. The
//! dispatcher checks the proof against the service the command writes, then decides
//! where the command goes. On a single node it is applied here and now. In a cluster,
//! a write to an ephemeral client goes to [`Distro::submit`]: applied here when this
//! member is responsible for the client (and sent to the peers), else forwarded to the
//! responsible member, and the caller's answer waits for the real outcome, which is
//! why [`NamingDispatcher::submit`] is async. CP data (persistent instances, service
//! and cluster settings; see [`persistent::is_cp`]) is proposed to Raft when a group is
//! attached, and answered once committed and applied; with no Raft leader the write is
//! refused with a 503.

use std::sync::Arc;

use super::command::{Applied, NamingCommand, Origin};
use super::distro::Distro;
use super::persistent;
use super::registry::now_millis;
use super::{NamingError, NamingService};
use crate::auth::permission::Action;
use crate::auth::proof::AccessProof;
use crate::cluster::peer;
use crate::replication::raft::{RaftNode, WriteError};

/// Takes naming writes from every front door. Share it in an `Arc`.
pub struct NamingDispatcher {
    naming: Arc<NamingService>,
    distro: Option<Arc<Distro>>,
    raft: Option<Arc<RaftNode>>,
}

impl NamingDispatcher {
    /// A dispatcher that applies commands to `naming` (a single node).
    pub fn new(naming: Arc<NamingService>) -> Self {
        Self {
            naming,
            distro: None,
            raft: None,
        }
    }

    /// A dispatcher whose CP writes go through the Raft group `raft`.
    pub fn with_raft(mut self, raft: Arc<RaftNode>) -> Self {
        self.raft = Some(raft);
        self
    }

    /// A dispatcher of a cluster member: writes go through `distro`.
    pub fn with_distro(mut self, distro: Arc<Distro>) -> Self {
        self.distro = Some(distro);
        self
    }

    /// The naming use cases behind the door, for reads.
    pub fn naming(&self) -> &Arc<NamingService> {
        &self.naming
    }

    /// Submits one command for the holder of `proof`, stamped with this node's clock.
    ///
    /// Errors with [`NamingError::AccessDenied`] when the proof does not allow writing
    /// the command's service (nothing is applied); with [`NamingError::Remote`] 503
    /// when a CP write finds no Raft leader (nothing is applied); else as
    /// [`NamingService::apply`].
    pub async fn submit(
        &self,
        command: NamingCommand,
        proof: &AccessProof,
    ) -> Result<Applied, NamingError> {
        let service = command.service();
        if !proof.allows_naming(
            &service.namespace,
            &service.group,
            &service.service,
            Action::Write,
        ) {
            return Err(NamingError::AccessDenied {
                who: proof.who(),
                key: service.clone(),
            });
        }
        if let Some(raft) = &self.raft
            && persistent::is_cp(&command, &self.naming)
        {
            return match raft.write(peer::encode(&command), now_millis()).await {
                Ok(answer) => persistent::decode_answer(&answer),
                Err(e @ WriteError::NoLeader(_)) => Err(NamingError::Remote {
                    status: 503,
                    message: e.to_string(),
                }),
                Err(e @ WriteError::Stopped(_)) => Err(NamingError::Remote {
                    status: 500,
                    message: e.to_string(),
                }),
            };
        }
        match &self.distro {
            Some(distro) => distro.submit(command).await,
            None => self.naming.apply(command, Origin::Local, now_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DEFAULT_CLUSTER, Host, ServiceKey};
    use crate::naming::InstanceSpec;
    use crate::naming::registry::Registry;

    #[tokio::test]
    async fn a_command_without_the_right_is_refused_and_changes_nothing() {
        let naming = Arc::new(NamingService::new(Arc::new(Registry::new())));
        let dispatcher = NamingDispatcher::new(naming.clone());
        let key = ServiceKey::new("dev", "g", "stock");
        let register = NamingCommand::Register {
            service: key.clone(),
            instance: InstanceSpec {
                ip: "10.0.0.1".into(),
                host: Host::parse("10.0.0.1").unwrap(),
                port: 80,
                cluster: DEFAULT_CLUSTER.into(),
                weight: 1.0,
                enabled: true,
                healthy: true,
                ephemeral: true,
                metadata: Default::default(),
            },
        };
        let refused = dispatcher
            .submit(register.clone(), &AccessProof::anonymous())
            .await;
        assert!(
            matches!(&refused, Err(NamingError::AccessDenied { who, .. }) if who == "anonymous"),
            "{refused:?}"
        );
        assert!(naming.service(&key).is_none(), "nothing was applied");
        dispatcher
            .submit(register, &AccessProof::system("test"))
            .await
            .unwrap();
        assert_eq!(naming.service(&key).unwrap().instances.len(), 1);
    }
}
