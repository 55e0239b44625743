//! Address classification, the smokescreen table (S-01, S-03): which IP addresses egress may
//! never reach unless the operator allows a CIDR explicitly (`EXT_EGRESS_ALLOW_PRIVATE_CIDRS`).
//!
//! Every address a destination resolves to, and every IP literal in a URL, goes through
//! [`AddressPolicy::check`] before a socket is opened. IPv6 forms that carry an IPv4 address
//! (mapped, translated, compatible, NAT64, 6to4, Teredo) are refused as such, and the IPv4
//! address they carry is classified as well, so allowing e.g. `64:ff9b::/96` on a DNS64
//! network does not open `64:ff9b::a9fe:a9fe` (the metadata service).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why an address is refused: the reserved range it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Range {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8`: "this network"; Linux connects `0.x.y.z` to the local host.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// RFC 6598 carrier-grade NAT, `100.64.0.0/10`.
    CarrierGradeNat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud metadata or platform endpoint: `169.254.169.254`, `169.254.170.2` (ECS),
    /// `100.100.100.200` (Alibaba), `168.63.129.16` (Azure), `fd00:ec2::254` (EC2 IPv6).
    Metadata,
    /// `192.0.0.0/24` and `2001::/23`: IETF protocol assignments.
    IetfProtocol,
    /// Documentation ranges: `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// Benchmarking: `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Reserved or not allocated for global unicast: `240.0.0.0/4`, the deprecated 6to4 relay
    /// anycast `192.88.99.0/24`, the discard prefix `100::/64`, SRv6 SIDs `5f00::/16`, and any
    /// IPv6 address outside `2000::/3` not named otherwise.
    Reserved,
    /// IPv6 unique local addresses, `fc00::/7`.
    UniqueLocal,
    /// Deprecated IPv6 site-local addresses, `fec0::/10`.
    SiteLocal,
    /// IPv4-mapped IPv6, `::ffff:0:0/96`.
    Ipv4Mapped,
    /// IPv4-translated IPv6 (RFC 2765), `::ffff:0:0:0/96`.
    Ipv4Translated,
    /// Deprecated IPv4-compatible IPv6, `::/96`.
    Ipv4Compatible,
    /// NAT64: the well-known prefix `64:ff9b::/96` and the local-use `64:ff9b:1::/48`.
    Nat64,
    /// 6to4, `2002::/16`.
    SixToFour,
    /// Teredo, `2001::/32`.
    Teredo,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Range::Unspecified => "unspecified",
            Range::ThisNetwork => "this-network",
            Range::Loopback => "loopback",
            Range::Private => "private",
            Range::CarrierGradeNat => "carrier-grade-nat",
            Range::LinkLocal => "link-local",
            Range::Metadata => "metadata",
            Range::IetfProtocol => "ietf-protocol-assignment",
            Range::Documentation => "documentation",
            Range::Benchmarking => "benchmarking",
            Range::Multicast => "multicast",
            Range::Broadcast => "broadcast",
            Range::Reserved => "reserved",
            Range::UniqueLocal => "unique-local",
            Range::SiteLocal => "site-local",
            Range::Ipv4Mapped => "ipv4-mapped",
            Range::Ipv4Translated => "ipv4-translated",
            Range::Ipv4Compatible => "ipv4-compatible",
            Range::Nat64 => "nat64",
            Range::SixToFour => "6to4",
            Range::Teredo => "teredo",
        })
    }
}

/// The IPv4 table, first match wins (so the single metadata addresses precede their ranges).
const V4_TABLE: &[(u32, u8, Range)] = &[
    (0x0000_0000, 32, Range::Unspecified),
    (0x0000_0000, 8, Range::ThisNetwork),
    (0x0a00_0000, 8, Range::Private),
    (0x6464_64c8, 32, Range::Metadata), // 100.100.100.200
    (0x6440_0000, 10, Range::CarrierGradeNat),
    (0x7f00_0000, 8, Range::Loopback),
    (0xa9fe_a9fe, 32, Range::Metadata), // 169.254.169.254
    (0xa9fe_aa02, 32, Range::Metadata), // 169.254.170.2
    (0xa9fe_0000, 16, Range::LinkLocal),
    (0xa83f_8110, 32, Range::Metadata), // 168.63.129.16
    (0xac10_0000, 12, Range::Private),
    (0xc000_0000, 24, Range::IetfProtocol),
    (0xc000_0200, 24, Range::Documentation),
    (0xc058_6300, 24, Range::Reserved), // 192.88.99.0/24
    (0xc0a8_0000, 16, Range::Private),
    (0xc612_0000, 15, Range::Benchmarking),
    (0xc633_6400, 24, Range::Documentation),
    (0xcb00_7100, 24, Range::Documentation),
    (0xe000_0000, 4, Range::Multicast),
    (0xffff_ffff, 32, Range::Broadcast),
    (0xf000_0000, 4, Range::Reserved),
];

/// The IPv6 table, first match wins. Addresses outside `2000::/3` that match nothing here are
/// [`Range::Reserved`].
const V6_TABLE: &[(u128, u8, Range)] = &[
    (0, 128, Range::Unspecified),
    (1, 128, Range::Loopback),
    (0xffff_0000_0000, 96, Range::Ipv4Mapped),
    (0xffff_0000_0000_0000, 96, Range::Ipv4Translated),
    (0, 96, Range::Ipv4Compatible),
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96, Range::Nat64),
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, Range::Nat64),
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, Range::Reserved),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, Range::Teredo),
    (0x2001_0002_0000_0000_0000_0000_0000_0000, 48, Range::Benchmarking),
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, Range::Documentation),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, Range::IetfProtocol),
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16, Range::SixToFour),
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, Range::Documentation),
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16, Range::Reserved),
    (0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128, Range::Metadata),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, Range::UniqueLocal),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, Range::LinkLocal),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, Range::SiteLocal),
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, Range::Multicast),
];

fn v4_in(ip: u32, net: u32, prefix: u8) -> bool {
    prefix == 0 || (ip ^ net) >> (32 - u32::from(prefix)) == 0
}

fn v6_in(ip: u128, net: u128, prefix: u8) -> bool {
    prefix == 0 || (ip ^ net) >> (128 - u32::from(prefix)) == 0
}

/// The reserved range `ip` falls in, or `None` for a globally routable address. For IPv6 forms
/// carrying IPv4 this names the form only; [`embedded_ipv4`] gives the carried addresses.
pub fn classify(ip: IpAddr) -> Option<Range> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    let ip = u32::from(ip);
    V4_TABLE
        .iter()
        .find(|(net, prefix, _)| v4_in(ip, *net, *prefix))
        .map(|(_, _, range)| *range)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Range> {
    let bits = u128::from(ip);
    let listed = V6_TABLE
        .iter()
        .find(|(net, prefix, _)| v6_in(bits, *net, *prefix))
        .map(|(_, _, range)| *range);
    // Only 2000::/3 is allocated for global unicast; everything else is reserved by the IETF.
    listed.or_else(|| (!v6_in(bits, 0x2000 << 112, 3)).then_some(Range::Reserved))
}

/// The IPv4 addresses an IPv6 address carries, in every position its form allows: the low 32
/// bits of mapped, translated, compatible and NAT64 `/96` addresses; bits 16–47 of 6to4; the
/// server and the (inverted) client address of Teredo; every RFC 6052 layout of the local-use
/// NAT64 prefix `64:ff9b:1::/48`. Empty for other addresses.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = u128::from(ip);
    let o = ip.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let low32 = v4(o[12], o[13], o[14], o[15]);
    if bits <= 1 {
        // `::` and `::1` are themselves, not IPv4-compatible forms.
        return Vec::new();
    }
    if v6_in(bits, 0xffff_0000_0000, 96)
        || v6_in(bits, 0xffff_0000_0000_0000, 96)
        || v6_in(bits, 0, 96)
        || v6_in(bits, 0x0064_ff9b << 96, 96)
    {
        return vec![low32];
    }
    if v6_in(bits, 0x0064_ff9b_0001 << 80, 48) {
        // RFC 6052 §2.2: bits 64–71 are the reserved "u" octet, skipped by every layout.
        return vec![
            v4(o[6], o[7], o[9], o[10]),   // /48
            v4(o[7], o[9], o[10], o[11]),  // /56
            v4(o[9], o[10], o[11], o[12]), // /64
            low32,                         // /96
        ];
    }
    if v6_in(bits, 0x2002 << 112, 16) {
        return vec![v4(o[2], o[3], o[4], o[5])];
    }
    if v6_in(bits, 0x2001 << 112, 32) {
        return vec![v4(o[4], o[5], o[6], o[7]), v4(!o[12], !o[13], !o[14], !o[15])];
    }
    Vec::new()
}

/// A CIDR block, `10.0.0.0/8` or `fd00::/8`; a bare address means just that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address, host bits cleared.
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR block did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{input}` is not an IP address or CIDR block")]
    Address { input: String },
    /// The prefix length is not a number or too long for the address family.
    #[error("invalid prefix length in `{input}`")]
    Prefix { input: String },
    /// Bits are set past the prefix (`10.0.0.1/8`): probably a typo for a narrower block.
    #[error("`{input}` has host bits set past the prefix")]
    HostBits { input: String },
}

impl Cidr {
    /// The block of `prefix` leading bits of `network`.
    ///
    /// # Errors
    /// [`CidrError::Prefix`] if `prefix` is longer than the address, [`CidrError::HostBits`]
    /// if `network` has bits set past it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let input = || format!("{network}/{prefix}");
        let ok = match network {
            IpAddr::V4(v4) if prefix <= 32 => prefix == 32 || u32::from(v4) << prefix == 0,
            IpAddr::V6(v6) if prefix <= 128 => prefix == 128 || u128::from(v6) << prefix == 0,
            _ => return Err(CidrError::Prefix { input: input() }),
        };
        if ok {
            Ok(Cidr { network, prefix })
        } else {
            Err(CidrError::HostBits { input: input() })
        }
    }

    /// Whether `ip` is inside the block. Families never mix: `127.0.0.1/32` does not cover
    /// `::ffff:127.0.0.1` (that form is refused on its own, see the module doc).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4_in(u32::from(ip), u32::from(net), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => v6_in(u128::from(ip), u128::from(net), self.prefix),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Address {
            input: input.to_owned(),
        })?;
        let full = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => full,
            // `u8::from_str` takes a leading `+`; a prefix is digits only.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::Prefix {
                    input: input.to_owned(),
                })?
            }
            Some(_) => {
                return Err(CidrError::Prefix {
                    input: input.to_owned(),
                });
            }
        };
        Cidr::new(network, prefix).map_err(|e| match e {
            CidrError::HostBits { .. } => CidrError::HostBits {
                input: input.to_owned(),
            },
            _ => CidrError::Prefix {
                input: input.to_owned(),
            },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An address refused by [`AddressPolicy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prohibited {
    /// The address that was checked, as resolved or written.
    pub ip: IpAddr,
    /// The range that refused it: for an IPv6 form carrying a prohibited IPv4 address, the
    /// IPv4 address's range (the more telling one), else the form's.
    pub range: Range,
}

/// The table plus the operator's explicit allowances. Deny by default: with no allowances,
/// every address [`classify`] names is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// CIDR blocks exempt from the table (`EXT_EGRESS_ALLOW_PRIVATE_CIDRS`).
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// A policy exempting the blocks in `allow` from the table.
    pub fn new(allow: Vec<Cidr>) -> AddressPolicy {
        AddressPolicy { allow }
    }

    /// The explicit allowances.
    pub fn allowances(&self) -> &[Cidr] {
        &self.allow
    }

    /// Whether an allowance names `ip` explicitly.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|cidr| cidr.contains(ip))
    }

    /// Admits `ip` if it is globally routable or an allowance covers it; an IPv6 form carrying
    /// IPv4 needs both itself and every IPv4 address it carries to pass.
    ///
    /// # Errors
    /// [`Prohibited`] naming the range that refused the address.
    pub fn check(&self, ip: IpAddr) -> Result<(), Prohibited> {
        if let IpAddr::V6(v6) = ip {
            for inner in embedded_ipv4(v6) {
                if let Some(range) = classify_v4(inner).filter(|_| !self.covers(IpAddr::V4(inner))) {
                    return Err(Prohibited { ip, range });
                }
            }
        }
        match classify(ip) {
            Some(range) if !self.covers(ip) => Err(Prohibited { ip, range }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// S-01, S-03: the smokescreen table plus the IPv4-carrying IPv6 forms.
    #[test]
    fn s01_s03_prohibited_table() {
        let cases: &[(&str, Range)] = &[
            ("0.0.0.0", Range::Unspecified),
            ("0.1.2.3", Range::ThisNetwork),
            ("10.0.0.1", Range::Private),
            ("10.255.255.255", Range::Private),
            ("100.64.0.1", Range::CarrierGradeNat),
            ("100.127.255.255", Range::CarrierGradeNat),
            ("100.100.100.200", Range::Metadata),
            ("127.0.0.1", Range::Loopback),
            ("127.255.255.254", Range::Loopback),
            ("169.254.169.254", Range::Metadata),
            ("169.254.170.2", Range::Metadata),
            ("169.254.1.1", Range::LinkLocal),
            ("168.63.129.16", Range::Metadata),
            ("172.16.0.1", Range::Private),
            ("172.31.255.255", Range::Private),
            ("192.0.0.8", Range::IetfProtocol),
            ("192.0.2.1", Range::Documentation),
            ("192.88.99.1", Range::Reserved),
            ("192.168.1.1", Range::Private),
            ("198.18.0.1", Range::Benchmarking),
            ("198.19.255.255", Range::Benchmarking),
            ("198.51.100.7", Range::Documentation),
            ("203.0.113.9", Range::Documentation),
            ("224.0.0.1", Range::Multicast),
            ("239.255.255.250", Range::Multicast),
            ("240.0.0.1", Range::Reserved),
            ("255.255.255.255", Range::Broadcast),
            ("::", Range::Unspecified),
            ("::1", Range::Loopback),
            ("::ffff:127.0.0.1", Range::Ipv4Mapped),
            ("::ffff:8.8.8.8", Range::Ipv4Mapped),
            ("::ffff:0:7f00:1", Range::Ipv4Translated),
            ("::127.0.0.1", Range::Ipv4Compatible),
            ("::8.8.8.8", Range::Ipv4Compatible),
            ("64:ff9b::a9fe:a9fe", Range::Nat64),
            ("64:ff9b::808:808", Range::Nat64),
            ("64:ff9b:1::7f00:1", Range::Nat64),
            ("100::1", Range::Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Range::Teredo),
            ("2001:2::1", Range::Benchmarking),
            ("2001:10::1", Range::IetfProtocol),
            ("2001:db8::1", Range::Documentation),
            ("2002:a9fe:a9fe::", Range::SixToFour),
            ("2002:808:808::1", Range::SixToFour),
            ("3fff::1", Range::Documentation),
            ("5f00::1", Range::Reserved),
            ("fd00:ec2::254", Range::Metadata),
            ("fc00::1", Range::UniqueLocal),
            ("fdff::1", Range::UniqueLocal),
            ("fe80::1", Range::LinkLocal),
            ("febf::1", Range::LinkLocal),
            ("fec0::1", Range::SiteLocal),
            ("ff02::1", Range::Multicast),
            ("4000::1", Range::Reserved),
            ("1::1", Range::Reserved),
        ];
        for (addr, range) in cases {
            assert_eq!(classify(ip(addr)), Some(*range), "{addr}");
            let denied = AddressPolicy::default().check(ip(addr)).unwrap_err();
            assert_eq!(denied.ip, ip(addr), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "169.253.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2003::1",
        ] {
            assert_eq!(classify(ip(addr)), None, "{addr}");
            assert_eq!(AddressPolicy::default().check(ip(addr)), Ok(()), "{addr}");
        }
    }

    /// S-03: the IPv4 address inside each form is found, in every position the form allows.
    #[test]
    fn s03_embedded_ipv4() {
        let cases: &[(&str, &[&str])] = &[
            ("::ffff:127.0.0.1", &["127.0.0.1"]),
            ("::ffff:0:7f00:1", &["127.0.0.1"]),
            ("::127.0.0.1", &["127.0.0.1"]),
            ("64:ff9b::a9fe:a9fe", &["169.254.169.254"]),
            ("2002:a9fe:a9fe::", &["169.254.169.254"]),
            // Teredo: server 65.54.227.120, client 192.0.2.45 stored inverted.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", &["65.54.227.120", "192.0.2.45"]),
            ("::", &[]),
            ("::1", &[]),
            ("2606:4700::1", &[]),
        ];
        for (addr, expected) in cases {
            let v6: Ipv6Addr = addr.parse().unwrap();
            let got: Vec<String> = embedded_ipv4(v6).iter().map(ToString::to_string).collect();
            assert_eq!(got, *expected, "{addr}");
        }
        // RFC 6052 /48 layout: octets 6-7, the zero "u" octet 8, then octets 9-10.
        let local_use: Ipv6Addr = "64:ff9b:1:7f00:0:100::".parse().unwrap();
        assert!(embedded_ipv4(local_use).contains(&Ipv4Addr::new(127, 0, 0, 1)));
    }

    /// An allowance for an IPv6 wrapper does not open the IPv4 address it carries.
    #[test]
    fn s03_allowed_wrapper_still_checks_carried_ipv4() {
        let policy = AddressPolicy::new(vec!["64:ff9b::/96".parse().unwrap(), "2002::/16".parse().unwrap()]);
        assert_eq!(policy.check(ip("64:ff9b::808:808")), Ok(()));
        assert_eq!(
            policy.check(ip("64:ff9b::a9fe:a9fe")).unwrap_err().range,
            Range::Metadata
        );
        assert_eq!(policy.check(ip("2002:a00:1::")).unwrap_err().range, Range::Private);
        assert_eq!(policy.check(ip("2002:808:808::")), Ok(()));
        // Mapped forms stay refused when only the IPv4 address is allowed.
        let loopback = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(loopback.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(loopback.check(ip("127.0.0.2")).unwrap_err().range, Range::Loopback);
        assert_eq!(
            loopback.check(ip("::ffff:127.0.0.1")).unwrap_err().range,
            Range::Ipv4Mapped
        );
    }

    #[test]
    fn cidr_parsing() {
        let ok: &[(&str, &str)] = &[
            ("127.0.0.1/32", "127.0.0.1/32"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
        ];
        for (input, shown) in ok {
            assert_eq!(input.parse::<Cidr>().unwrap().to_string(), *shown, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("10.0.0.1/8", "host-bits"),
            ("10.0.0.0/33", "prefix"),
            ("10.0.0.0/+8", "prefix"),
            ("10.0.0.0/", "prefix"),
            ("::/129", "prefix"),
            ("localhost/32", "address"),
            ("127.1", "address"),
        ];
        for (input, expected) in bad {
            let kind = match input.parse::<Cidr>().unwrap_err() {
                CidrError::Address { .. } => "address",
                CidrError::Prefix { .. } => "prefix",
                CidrError::HostBits { .. } => "host-bits",
            };
            assert_eq!(kind, *expected, "{input}");
        }
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("::ffff:10.0.0.1")));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("::1")));
        assert!(!all.contains(ip("127.0.0.1")));
    }
}
