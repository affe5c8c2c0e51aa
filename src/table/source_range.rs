//! Allow and deny lists of client addresses (`allowlist-source-range`, `denylist-source-range`),
//! as prefix tries: a lookup walks at most the address's bits, whatever the list's length.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;

/// A set of CIDRs, IPv4 and IPv6.
#[derive(Clone, Debug, Default)]
pub struct IpSet {
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
    /// The CIDRs as given, for equality and display.
    cidrs: Vec<IpNet>,
}

impl IpSet {
    pub fn new(cidrs: Vec<IpNet>) -> Self {
        let mut set = Self::default();
        for cidr in &cidrs {
            match cidr.trunc() {
                IpNet::V4(net) => set.v4.insert(net),
                IpNet::V6(net) => set.v6.insert(net),
            };
        }
        set.cidrs = cidrs;
        set
    }

    /// Whether `ip` is in one of the CIDRs. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as
    /// a dual-stack socket reports IPv4 clients) is taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.v4.get_spm(&Ipv4Net::from(ip)).is_some(),
            IpAddr::V6(ip) => self.v6.get_spm(&Ipv6Net::from(ip)).is_some(),
        }
    }

    pub fn cidrs(&self) -> &[IpNet] {
        &self.cidrs
    }
}

impl PartialEq for IpSet {
    fn eq(&self, other: &Self) -> bool {
        self.cidrs == other.cidrs
    }
}

impl Eq for IpSet {}

/// Who may reach a route, by client address, with ingress-nginx's order: the deny list first
/// (nginx's `deny` lines come before the allow list's `allow` lines and `deny all`), then the
/// allow list, if there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRanges {
    pub allow: Option<IpSet>,
    pub deny: Option<IpSet>,
}

impl SourceRanges {
    pub fn admits(&self, ip: IpAddr) -> bool {
        !self.deny.as_ref().is_some_and(|deny| deny.contains(ip))
            && self.allow.as_ref().is_none_or(|allow| allow.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cidrs: &[&str]) -> IpSet {
        IpSet::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    #[test]
    fn addresses_match_their_covering_cidrs_in_both_families() {
        let set = set(&["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"]);
        for (ip, expected) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(set.contains(ip.parse().unwrap()), expected, "{ip}");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let ranges = SourceRanges {
            allow: Some(set(&["10.0.0.0/8"])),
            deny: Some(set(&["10.0.0.13/32"])),
        };
        assert!(ranges.admits("10.0.0.12".parse().unwrap()));
        assert!(!ranges.admits("10.0.0.13".parse().unwrap()));
        assert!(!ranges.admits("172.16.0.1".parse().unwrap()));
        let deny_only = SourceRanges {
            allow: None,
            deny: Some(set(&["0.0.0.0/0"])),
        };
        assert!(!deny_only.admits("1.2.3.4".parse().unwrap()));
        assert!(deny_only.admits("::1".parse().unwrap()));
    }
}
