//! Proxy headers: who the client really is when a trusted proxy says so.
//!
//! Only `X-Forwarded-For` and `X-Forwarded-Proto` from a peer in `--forwarded-allow-ips` are
//! believed; everything else is ignored, as uvicorn does.

use std::net::IpAddr;

use http::HeaderMap;

use super::Error;
use crate::handoff::Peer;

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    all: bool,
    /// Addresses and networks (`10.0.0.0/8`, `fd00::/8`); an address is a full-length one.
    nets: Vec<Network>,
    /// Unix-socket peers have no address; trusted when the list allows everything or names
    /// "unix:" as uvicorn does.
    unix: bool,
}

impl TrustedProxies {
    /// Parses a comma-separated list such as `"127.0.0.1, ::1, 10.0.0.0/8"`, `"unix:"` or
    /// `"*"`.
    pub fn parse(list: &str) -> Result<Self, Error> {
        let mut t = TrustedProxies::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                t.all = true;
            } else if item == "unix:" {
                t.unix = true;
            } else {
                let net =
                    Network::parse(item).ok_or_else(|| Error::TrustedProxy(item.to_string()))?;
                t.nets.push(net);
            }
        }
        Ok(t)
    }

    fn trusts(&self, peer: &Peer) -> bool {
        match peer {
            _ if self.all => true,
            Peer::Socket(addr) => self.trusts_ip(addr.ip()),
            Peer::Unix => self.unix,
            Peer::Forwarded(..) => false,
        }
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The client and scheme the scope should show.
    pub(super) fn resolve(
        &self,
        peer: &Peer,
        scheme: &'static str,
        headers: &HeaderMap,
    ) -> (Peer, &'static str) {
        if !self.trusts(peer) {
            return (peer.clone(), scheme);
        }
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
            Some(p) if p.trim().eq_ignore_ascii_case("http") => "http",
            Some(p) if p.trim().eq_ignore_ascii_case("wss") => "wss",
            Some(p) if p.trim().eq_ignore_ascii_case("ws") => "ws",
            _ => scheme,
        };
        // The nearest untrusted hop is the client; with everything trusted, the first entry.
        let client = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        let chosen = client
            .iter()
            .rev()
            .find(|h| !self.all && h.parse::<IpAddr>().map_or(true, |ip| !self.trusts_ip(ip)))
            .or_else(|| client.first());
        match chosen {
            Some(host) => (Peer::Forwarded(host.to_string(), 0), scheme),
            None => (peer.clone(), scheme),
        }
    }
}

/// An address with a prefix length: `10.0.0.0/8`, or `10.0.0.1` (all 32 bits).
#[derive(Clone, Copy, Debug)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.trim().parse::<IpAddr>().ok()?, Some(prefix.trim())),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => width,
        };
        (prefix <= width).then_some(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            let keep = u32::from(prefix);
            let shift = u32::from(width) - keep;
            if keep == 0 {
                0
            } else {
                (bits >> shift) << shift
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_taken_as_is() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        let peer = Peer::Socket("127.0.0.1:5000".parse().unwrap());
        let (client, scheme) =
            t.resolve(&peer, "http", &headers(&[("x-forwarded-for", "1.2.3.4")]));
        assert!(matches!(client, Peer::Socket(_)));
        assert_eq!(scheme, "http");
    }

    #[test]
    fn trusted_peer_forwards_client_and_scheme() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let peer = Peer::Socket("127.0.0.1:5000".parse().unwrap());
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 127.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let (client, scheme) = t.resolve(&peer, "http", &h);
        assert!(matches!(client, Peer::Forwarded(ref h, 0) if h == "1.2.3.4"));
        assert_eq!(scheme, "https");
    }

    #[test]
    fn networks_and_mapped_addresses_are_trusted() {
        let t = TrustedProxies::parse("10.0.0.0/8, fd00::/16, 192.168.1.7").unwrap();
        for ip in ["10.1.2.3", "::ffff:10.9.9.9", "fd00:1::5", "192.168.1.7"] {
            assert!(t.trusts_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "fd01::1", "192.168.1.8", "::1"] {
            assert!(!t.trusts_ip(ip.parse().unwrap()), "{ip}");
        }
        let any = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert!(any.trusts_ip("8.8.8.8".parse().unwrap()));
        assert!(!any.trusts_ip("::2".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/-1",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_entry_is_refused() {
        assert!(TrustedProxies::parse("127.0.0.1, nonsense").is_err());
        assert!(TrustedProxies::parse("*").unwrap().all);
    }

    /// Random proxy lists and forwarding headers: parsing never panics, an untrusted peer is
    /// never replaced, and a trusted one is replaced only by an entry of its header: the
    /// nearest that is not itself a trusted proxy (or the first, when all are).
    #[test]
    fn fuzz_forwarding_headers() {
        const HOSTS: [&str; 6] = ["10.0.0.1", "10.0.0.2", "1.2.3.4", "::1", "unknown", "x y"];
        crate::fuzzing::run("proxy", |rng| {
            let trusted: Vec<&str> = (0..rng.below(3)).map(|_| *rng.pick(&HOSTS[..4])).collect();
            let list = if rng.chance(6) {
                "*".to_string()
            } else {
                trusted.join(", ")
            };
            let junk_len = rng.below(12);
            let junk = String::from_utf8_lossy(&rng.bytes(junk_len)).into_owned();
            let _ = TrustedProxies::parse(&junk);
            let t = TrustedProxies::parse(&list).unwrap();
            let entries: Vec<&str> = (0..rng.below(5)).map(|_| *rng.pick(&HOSTS)).collect();
            let mut h = HeaderMap::new();
            if !entries.is_empty() {
                h.append("x-forwarded-for", entries.join(" , ").parse().unwrap());
            }
            if rng.chance(2) {
                let proto = *rng.pick(&["https", "HTTP", "wss", "gopher", " ws "]);
                h.append("x-forwarded-proto", proto.parse().unwrap());
            }
            let peer_ip = *rng.pick(&["10.0.0.1", "10.0.0.9"]);
            let peer = Peer::Socket(format!("{peer_ip}:1").parse().unwrap());
            let (client, scheme) = t.resolve(&peer, "http", &h);
            assert!(["http", "https", "ws", "wss"].contains(&scheme));
            let trusts_peer = list == "*" || trusted.contains(&peer_ip);
            match client {
                Peer::Socket(a) => {
                    assert_eq!(a.ip().to_string(), peer_ip);
                    assert!(!trusts_peer || entries.is_empty());
                }
                Peer::Forwarded(host, _) => {
                    assert!(trusts_peer, "an untrusted peer was replaced by {host}");
                    let expected = entries
                        .iter()
                        .rev()
                        .find(|e| list != "*" && !trusted.contains(e))
                        .or(entries.first())
                        .unwrap();
                    assert_eq!(&host, expected, "list {list:?}, entries {entries:?}");
                }
                Peer::Unix => panic!("a TCP peer became a Unix one"),
            }
        });
    }
}
