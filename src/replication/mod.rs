//! Domain-agnostic replication engines (DESIGN §2, §6). [`raft`] keeps the CP data of
//! a cluster (persistent instances, service metadata, checker settings) in one
//! openraft group with a durable log in the data dir; it knows commands only as
//! bytes and leaves their meaning to the domain that implements
//! [`raft::ReplicatedState`]. (Distro, the AP engine, lives in `naming::distro`: its
//! records are the naming client model itself.)

pub mod raft;
