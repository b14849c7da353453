//! Locality (`[dns.locality]`): which Nacos cluster a DNS client is closest to.
//!
//! A client is placed by its source address, or, when the query comes from one of
//! `dns.ecs_resolvers` and carries an EDNS Client Subnet option (RFC 7871), by that
//! subnet. The longest configured network that holds the address names the cluster.
//! The service zone then answers from that cluster's instances when it has healthy
//! ones, else from all (`naming::selection::prefer_cluster`).
//!
//! With Client Subnet, the answer says which addresses it holds for (SCOPE
//! PREFIX-LENGTH, RFC 7871 §7.2.1): the shortest prefix of the client's address
//! inside which every address is placed the same way, so a resolver may reuse the
//! answer for exactly those clients.
//!
//! Nothing here runs when `[dns.locality]` is empty.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::wire::ClientSubnetView;

/// Where a query comes from, for locality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The cluster of the longest network holding the client's address, if any.
    pub cluster: Option<Arc<str>>,
    /// With a trusted Client Subnet option: the scope prefix length its answer holds
    /// for, when the answer depends on the placement.
    pub client_subnet_scope: Option<u8>,
}

/// The `[dns.locality]` networks and the resolvers trusted for Client Subnet.
#[derive(Debug, Default)]
pub struct Locality {
    /// Networks (canonical: host bits cleared) and their clusters, longest prefix
    /// first.
    networks: Vec<(IpNet, Arc<str>)>,
    ecs_resolvers: Vec<IpNet>,
}

impl Locality {
    /// From `dns.locality` (network to cluster name) and `dns.ecs_resolvers`.
    pub fn new<'a>(
        networks: impl IntoIterator<Item = (&'a IpNet, &'a String)>,
        ecs_resolvers: &[IpNet],
    ) -> Self {
        let mut networks: Vec<(IpNet, Arc<str>)> = networks
            .into_iter()
            .map(|(net, cluster)| (net.trunc(), Arc::from(cluster.as_str())))
            .collect();
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self {
            networks,
            ecs_resolvers: ecs_resolvers.to_vec(),
        }
    }

    /// Whether no network is configured (then nobody is placed).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Places a query from `source` that may carry a Client Subnet option. The option
    /// counts only from `dns.ecs_resolvers`; a SOURCE PREFIX-LENGTH of 0 asks that no
    /// client address be used (RFC 7871 §7.1.2), so the resolver's own address
    /// places it and the scope is 0.
    pub fn place(&self, source: IpAddr, client_subnet: Option<&ClientSubnetView>) -> Placement {
        let source = source.to_canonical();
        let subnet =
            client_subnet.filter(|_| self.ecs_resolvers.iter().any(|net| net.contains(&source)));
        match subnet {
            Some(subnet) if subnet.source_prefix > 0 => {
                let addr = subnet.addr.to_canonical();
                Placement {
                    cluster: self.cluster_of(addr),
                    client_subnet_scope: Some(self.scope(addr)),
                }
            }
            Some(_) => Placement {
                cluster: self.cluster_of(source),
                client_subnet_scope: Some(0),
            },
            None => Placement {
                cluster: self.cluster_of(source),
                client_subnet_scope: None,
            },
        }
    }

    /// The cluster of the longest network holding `addr`.
    fn cluster_of(&self, addr: IpAddr) -> Option<Arc<str>> {
        self.networks
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map(|(_, cluster)| cluster.clone())
    }

    /// The shortest prefix length of `addr` inside which every address is placed as
    /// `addr` is: long enough to lie inside every network that holds `addr`, and
    /// outside every one that does not.
    fn scope(&self, addr: IpAddr) -> u8 {
        self.networks
            .iter()
            .filter_map(|(net, _)| {
                let common = common_prefix(addr, net.network())?;
                Some(if common >= net.prefix_len() {
                    net.prefix_len()
                } else {
                    common + 1
                })
            })
            .max()
            .unwrap_or(0)
    }
}

/// How many leading bits `a` and `b` share; `None` when their families differ.
fn common_prefix(a: IpAddr, b: IpAddr) -> Option<u8> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some((u32::from(a) ^ u32::from(b)).leading_zeros() as u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            Some((u128::from(a) ^ u128::from(b)).leading_zeros() as u8)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locality(networks: &[(&str, &str)], resolvers: &[&str]) -> Locality {
        let networks: Vec<(IpNet, String)> = networks
            .iter()
            .map(|(net, cluster)| (net.parse().unwrap(), cluster.to_string()))
            .collect();
        let resolvers: Vec<IpNet> = resolvers.iter().map(|r| r.parse().unwrap()).collect();
        Locality::new(networks.iter().map(|(n, c)| (n, c)), &resolvers)
    }

    #[test]
    fn the_longest_network_wins() {
        let l = locality(&[("10.0.0.0/8", "all"), ("10.1.0.0/16", "hz")], &[]);
        let place = |ip: &str| l.place(ip.parse().unwrap(), None).cluster;
        assert_eq!(place("10.1.2.3").as_deref(), Some("hz"));
        assert_eq!(place("10.2.2.3").as_deref(), Some("all"));
        assert_eq!(place("::ffff:10.1.0.1").as_deref(), Some("hz"));
        assert_eq!(place("192.0.2.1"), None);
    }

    #[test]
    fn scope_covers_exactly_the_addresses_placed_alike() {
        let l = locality(&[("10.1.0.0/16", "hz"), ("10.1.5.0/24", "sh")], &[]);
        let scope = |ip: &str| l.scope(ip.parse().unwrap());
        // In the /24: the /24 itself.
        assert_eq!(scope("10.1.5.7"), 24);
        // In the /16 beside the /24: far enough from 10.1.5.0 to exclude it.
        assert_eq!(scope("10.1.128.0"), 17);
        assert_eq!(scope("10.1.4.0"), 24);
        // Outside both: just far enough from 10.1.0.0/16.
        assert_eq!(scope("192.0.2.0"), 1);
        assert_eq!(scope("10.0.0.0"), 16);
        assert_eq!(scope("2001:db8::"), 0);
    }
}
