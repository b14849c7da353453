//! The cluster: members, peer liveness, and which node is responsible for what
//! (DESIGN §5). Today: [`responsibility`], the rule that gives every client one
//! responsible node. Membership, peer probes and the peer client come with the
//! cluster work of issue #12.

pub mod responsibility;
