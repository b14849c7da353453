//! Which node is responsible for a client: it takes the client's beats and expires its
//! instances (DESIGN §2). Every node computes the same answer from the same list of UP
//! members, with no coordination.
//!
//! The rule is rendezvous (highest random weight) hashing: each member scores the
//! client with [`score`], and the highest score wins (a tie goes to the member that
//! sorts first). When a member leaves, only the clients it owned move, each to the
//! member that scored it second; when one joins, it takes about 1/n of the clients from
//! the others and nothing else moves. (Nacos's `DistroMapper` takes the client's hash
//! modulo the member count, which moves most clients whenever the count changes.)
//!
//! The hash is ours and fixed, never `std::hash::DefaultHasher`, whose output may
//! change between builds and would split a cluster during a rolling upgrade: 64-bit
//! FNV-1a over the member's address, one `0xFF` byte (which no address or id holds)
//! and the client id, then SplitMix64's finalizer so that ids differing in their last
//! bytes spread over all members. A golden vector in the tests pins the output.

use crate::model::ClientId;

/// Whether this node handles a client's beats and expiry.
pub trait Responsibility: Send + Sync {
    /// `true` when this node is responsible for `client`.
    fn is_responsible(&self, client: &ClientId) -> bool;

    /// When the set of responsible members last changed, milliseconds since the
    /// epoch (0: never). Clients that moved then get a grace to beat their new owner.
    fn moved_at_ms(&self) -> u64 {
        0
    }
}

/// A node without peers: responsible for every client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standalone;

impl Responsibility for Standalone {
    fn is_responsible(&self, _: &ClientId) -> bool {
        true
    }
}

/// The responsibility of node `this` among the UP `members` (addresses `host:port`,
/// `this` among them).
#[derive(Clone, Debug)]
pub struct Members {
    this: String,
    members: Vec<String>,
}

impl Members {
    /// The UP members (any order; duplicates are dropped) as seen by node `this`.
    pub fn new(this: impl Into<String>, members: impl IntoIterator<Item = String>) -> Self {
        let mut members: Vec<String> = members.into_iter().collect();
        members.sort();
        members.dedup();
        Self {
            this: this.into(),
            members,
        }
    }

    /// The member responsible for `client`; `None` when there is no member.
    pub fn responsible(&self, client: &ClientId) -> Option<&str> {
        responsible_member(&self.members, client)
    }

    /// The member responsible for the thing named `id` (see [`responsible_for_id`]).
    pub fn responsible_for(&self, id: &str) -> Option<&str> {
        responsible_for_id(&self.members, id)
    }
}

impl Responsibility for Members {
    fn is_responsible(&self, client: &ClientId) -> bool {
        self.responsible(client) == Some(self.this.as_str())
    }
}

/// The member of `members` responsible for `client`: the highest [`score`], a tie
/// going to the member that sorts first. `None` when `members` is empty. The answer
/// does not depend on the order of `members`.
pub fn responsible_member<'a, S: AsRef<str>>(
    members: &'a [S],
    client: &ClientId,
) -> Option<&'a str> {
    responsible_for_id(members, client.as_str())
}

/// Member `member`'s score for `client`: 64-bit FNV-1a of `member`, `0xFF`, `client`,
/// then the SplitMix64 finalizer.
pub fn score(member: &str, client: &ClientId) -> u64 {
    score_id(member, client.as_str())
}

/// The member of `members` responsible for the thing named `id` (a client id, or
/// [`service_id`] for a service's probes), by the same rule as [`responsible_member`].
pub fn responsible_for_id<'a, S: AsRef<str>>(members: &'a [S], id: &str) -> Option<&'a str> {
    members
        .iter()
        .map(|m| m.as_ref())
        .max_by(|a, b| score_id(a, id).cmp(&score_id(b, id)).then_with(|| b.cmp(a)))
}

/// The id a service's probes are assigned by (DESIGN §2: persistent instances are
/// probed by the member responsible for their service): `service#` and the key as
/// `group@@service@namespace`. Never equal to a client id, which has no `#` prefix.
pub fn service_id(key: &crate::model::ServiceKey) -> String {
    format!("service#{key}")
}

/// Member `member`'s score for the thing named `id`: 64-bit FNV-1a of `member`, `0xFF`,
/// `id`, then the SplitMix64 finalizer.
pub fn score_id(member: &str, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let bytes = member
        .as_bytes()
        .iter()
        .chain(std::iter::once(&0xFF))
        .chain(id.as_bytes());
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}:8848")).collect()
    }

    fn random_clients(seed: u64, n: usize) -> Vec<ClientId> {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let ip = format!(
                    "10.{}.{}.{}",
                    rng.random::<u8>(),
                    rng.random::<u8>(),
                    rng.random::<u8>()
                );
                ClientId::http(&ip, rng.random_range(1..=u16::MAX))
            })
            .collect()
    }

    #[test]
    fn golden_vector_pins_the_hash() {
        let client = ClientId::http("10.1.2.3", 8080);
        assert_eq!(client.as_str(), "10.1.2.3:8080#true");
        // A change here splits a cluster during a rolling upgrade.
        assert_eq!(score("10.0.0.1:8848", &client), GOLDEN[0]);
        assert_eq!(score("10.0.0.2:8848", &client), GOLDEN[1]);
        assert_eq!(score("", &ClientId::http("", 0)), GOLDEN[2]);
        let three = members(3);
        let owners: Vec<&str> = (0..6)
            .map(|i| {
                responsible_member(&three, &ClientId::http(&format!("192.168.0.{i}"), 80)).unwrap()
            })
            .collect();
        assert_eq!(owners, GOLDEN_OWNERS);
    }

    // Checked against an independent implementation (Python, from the definition in
    // the module docs).
    const GOLDEN: [u64; 3] = [
        17_175_302_130_134_873_633,
        13_532_552_405_234_838_588,
        16_477_342_622_675_948_140,
    ];
    const GOLDEN_OWNERS: [&str; 6] = [
        "10.0.0.2:8848",
        "10.0.0.2:8848",
        "10.0.0.2:8848",
        "10.0.0.1:8848",
        "10.0.0.2:8848",
        "10.0.0.2:8848",
    ];

    #[test]
    fn the_answer_does_not_depend_on_the_order_of_members() {
        let sorted = members(5);
        let mut reversed = sorted.clone();
        reversed.reverse();
        for client in random_clients(1, 2_000) {
            assert_eq!(
                responsible_member(&sorted, &client),
                responsible_member(&reversed, &client)
            );
        }
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_clients_and_a_joining_one_takes_about_its_share() {
        let clients = random_clients(2, 30_000);
        let three = members(3);
        let two: Vec<String> = three[..2].to_vec();
        let four = members(4);
        let mut moved_on_join = 0;
        for client in &clients {
            let before = responsible_member(&three, client).unwrap();
            let after_leave = responsible_member(&two, client).unwrap();
            if before != three[2] {
                assert_eq!(
                    before, after_leave,
                    "a client of a member that stayed moved"
                );
            }
            let after_join = responsible_member(&four, client).unwrap();
            if after_join != before {
                assert_eq!(after_join, four[3], "a client moved between old members");
                moved_on_join += 1;
            }
        }
        // About a quarter moves to the new member.
        let share = moved_on_join as f64 / clients.len() as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
    }

    #[test]
    fn clients_spread_evenly() {
        let clients = random_clients(3, 30_000);
        let three = members(3);
        for member in &three {
            let owned = clients
                .iter()
                .filter(|c| responsible_member(&three, c) == Some(member.as_str()))
                .count();
            let share = owned as f64 / clients.len() as f64;
            assert!((0.31..0.36).contains(&share), "{member}: {share}");
        }
        // Ids that differ only in their last byte spread too.
        let near: Vec<ClientId> = (0..3_000).map(|p| ClientId::http("10.0.0.9", p)).collect();
        for member in &three {
            let owned = near
                .iter()
                .filter(|c| responsible_member(&three, c) == Some(member.as_str()))
                .count();
            assert!((900..1_100).contains(&owned), "{member}: {owned}");
        }
    }

    #[test]
    fn standalone_and_members_answer_for_this_node() {
        let client = ClientId::http("10.1.2.3", 8080);
        assert!(Standalone.is_responsible(&client));
        let owner = responsible_member(&members(3), &client)
            .unwrap()
            .to_string();
        assert!(Members::new(owner.clone(), members(3)).is_responsible(&client));
        let other = members(3).into_iter().find(|m| *m != owner).unwrap();
        assert!(!Members::new(other, members(3)).is_responsible(&client));
        assert!(responsible_member::<String>(&[], &client).is_none());
    }
}
