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
    ips: Vec<IpAddr>,
    /// Unix-socket peers have no address; trusted when the list allows everything or names
    /// "unix:" as uvicorn does.
    unix: bool,
}

impl TrustedProxies {
    /// Parses a comma-separated list such as `"127.0.0.1, ::1"` or `"*"`.
    pub fn parse(list: &str) -> Result<Self, Error> {
        let mut t = TrustedProxies::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                t.all = true;
            } else if item == "unix:" {
                t.unix = true;
            } else {
                let ip = item
                    .parse::<IpAddr>()
                    .map_err(|_| Error::TrustedProxy(item.to_string()))?;
                t.ips.push(ip);
            }
        }
        Ok(t)
    }

    fn trusts(&self, peer: &Peer) -> bool {
        match peer {
            _ if self.all => true,
            Peer::Socket(addr) => self.ips.contains(&addr.ip()),
            Peer::Unix => self.unix,
            Peer::Forwarded(..) => false,
        }
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
            .find(|h| {
                !self.all
                    && h.parse::<IpAddr>()
                        .map_or(true, |ip| !self.ips.contains(&ip))
            })
            .or_else(|| client.first());
        match chosen {
            Some(host) => (Peer::Forwarded(host.to_string(), 0), scheme),
            None => (peer.clone(), scheme),
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
