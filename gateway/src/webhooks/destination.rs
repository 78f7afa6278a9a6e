//! Where a webhook may go (SSRF screening). An endpoint URL must be `https` with a host
//! that is neither a private or special address nor a name resolving to one. It is
//! screened when the endpoint is saved and again before every delivery, against the
//! addresses the [`Resolver`] returned at that moment; the connection then goes to
//! exactly the checked address ([`Checked::addr`]): no second lookup (which a DNS
//! rebinding answer could change), no proxy (environment variables are never read), no
//! redirect followed (the delivery counts a `3xx` as a failure).
//!
//! Refused: loopback, unspecified, private (RFC 1918, IPv6 ULA `fc00::/7` — which holds
//! the AWS metadata address `fd00:ec2::254`), link-local (`169.254.0.0/16`, with the
//! metadata address `169.254.169.254`, and `fe80::/10`), CGNAT `100.64.0.0/10`,
//! multicast, broadcast, documentation and benchmarking ranges, the other IANA special
//! blocks, and every IPv6 form that carries an IPv4 address (IPv4-mapped `::ffff:0:0/96`,
//! IPv4-compatible `::/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`,
//! Teredo `2001::/32`). Numeric host forms that hide an address (`2130706433`,
//! `0x7f.1`, `0177.0.0.1`) are parsed as the address they mean (the WHATWG URL rules,
//! which the `url` crate follows) and screened as such; a name whose last label is
//! numeric is refused.
//!
//! The development flag (`--webhooks-allow-loopback-http`, only with `--dev`) allows
//! loopback destinations, over `http` too, so the dev stack and the tests can receive
//! webhooks on `127.0.0.1`. Nothing else is relaxed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// What the screening allows beyond the rules above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// Development only: loopback destinations, over plain `http` too.
    pub allow_loopback: bool,
}

/// Why a destination is refused; [`Refusal::reason`] is a stable word for the API and
/// the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not an absolute URL, or longer than [`MAX_URL_LEN`].
    #[error("not an absolute URL of at most {MAX_URL_LEN} characters")]
    Malformed,
    /// Not `https` (nor `http` to loopback under the development flag).
    #[error("the URL must be https")]
    Scheme,
    /// A user name or password in the URL.
    #[error("the URL must not carry credentials")]
    Credentials,
    /// A name that looks numeric but is no address (a hidden address form).
    #[error("the host is a numeric form that is not a plain address")]
    NumericHost,
    /// The name does not resolve (or to nothing).
    #[error("the host does not resolve")]
    Unresolvable,
    /// The host is, or resolves to, an address of this kind.
    #[error("the host is or resolves to a {0} address")]
    Address(AddressKind),
}

impl Refusal {
    /// A stable word.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed_url",
            Refusal::Scheme => "https_required",
            Refusal::Credentials => "credentials_in_url",
            Refusal::NumericHost => "numeric_host",
            Refusal::Unresolvable => "unresolvable",
            Refusal::Address(kind) => kind.as_str(),
        }
    }
}

/// The kind of a refused address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Loopback,
    Unspecified,
    Private,
    LinkLocal,
    /// `169.254.169.254`, `fd00:ec2::254`.
    Metadata,
    /// `100.64.0.0/10`.
    SharedCgnat,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, reserved and other IANA special blocks.
    Reserved,
    /// An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo).
    Ipv4Embedded,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::Loopback => "loopback",
            AddressKind::Unspecified => "unspecified",
            AddressKind::Private => "private",
            AddressKind::LinkLocal => "link_local",
            AddressKind::Metadata => "metadata",
            AddressKind::SharedCgnat => "cgnat",
            AddressKind::Multicast => "multicast",
            AddressKind::Broadcast => "broadcast",
            AddressKind::Reserved => "reserved",
            AddressKind::Ipv4Embedded => "ipv4_embedded",
        }
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resolves a host name to addresses: the system's resolver in service, one the test
/// controls in the tests (so no screening test depends on, or sends, real DNS).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.map(|a| a.ip()).collect())
    }
}

/// A screened destination: connect to `addr`, nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub url: url::Url,
    /// The host as written (TLS server name and `Host` header).
    pub host: String,
    pub addr: SocketAddr,
    pub tls: bool,
}

impl Checked {
    /// The request target: path and query.
    pub fn target(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// `Host` header value.
    pub fn host_header(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

/// The checks that need no resolution: the URL's form, scheme and credentials, and an
/// address host's kind. `Ok` holds the parsed URL.
pub fn check_url(text: &str, policy: DestinationPolicy) -> Result<url::Url, Refusal> {
    if text.len() > MAX_URL_LEN {
        return Err(Refusal::Malformed);
    }
    let url = url::Url::parse(text).map_err(|_| Refusal::Malformed)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback => {}
        _ => return Err(Refusal::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    match url.host() {
        None => return Err(Refusal::Malformed),
        Some(url::Host::Ipv4(ip)) => screen_address(IpAddr::V4(ip), policy)?,
        Some(url::Host::Ipv6(ip)) => screen_address(IpAddr::V6(ip), policy)?,
        Some(url::Host::Domain(name)) => {
            // The WHATWG parser already turned every numeric IPv4 form into an address;
            // a name ending in a numeric label is something no resolver should guess at.
            let last = name.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
            let numeric = !last.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit())
                    || (last.len() > 2 && last[..2].eq_ignore_ascii_case("0x")));
            if numeric {
                return Err(Refusal::NumericHost);
            }
        }
    }
    Ok(url)
}

/// Screen `text` completely: [`check_url`], then every address its host resolves to
/// (all must pass, so a name with one private address among public ones is refused).
/// `Ok` names the one address to connect to.
pub async fn screen(text: &str, policy: DestinationPolicy, resolver: &dyn Resolver) -> Result<Checked, Refusal> {
    let url = check_url(text, policy)?;
    let port = url.port_or_known_default().ok_or(Refusal::Malformed)?;
    let (host, addresses) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(name)) => {
            let addresses = resolver.resolve(name, port).await.map_err(|_| Refusal::Unresolvable)?;
            (name.to_owned(), addresses)
        }
        None => return Err(Refusal::Malformed),
    };
    let first = *addresses.first().ok_or(Refusal::Unresolvable)?;
    for ip in &addresses {
        screen_address(*ip, policy)?;
    }
    if url.scheme() == "http" && !addresses.iter().all(IpAddr::is_loopback) {
        return Err(Refusal::Scheme);
    }
    let tls = url.scheme() == "https";
    Ok(Checked { host, addr: SocketAddr::new(first, port), tls, url })
}

/// `Ok` when a webhook may be sent to `ip`.
pub fn screen_address(ip: IpAddr, policy: DestinationPolicy) -> Result<(), Refusal> {
    let kind = match ip {
        IpAddr::V4(v4) => ipv4_kind(v4),
        IpAddr::V6(v6) => ipv6_kind(v6),
    };
    match kind {
        None => Ok(()),
        Some(AddressKind::Loopback) if policy.allow_loopback => Ok(()),
        Some(kind) => Err(Refusal::Address(kind)),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn ipv4_kind(ip: Ipv4Addr) -> Option<AddressKind> {
    use AddressKind::*;
    let table: &[([u8; 4], u32, AddressKind)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, Reserved),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([100, 64, 0, 0], 10, SharedCgnat),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Reserved),
        ([203, 0, 113, 0], 24, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, kind)| *kind)
}

fn ipv6_kind(ip: Ipv6Addr) -> Option<AddressKind> {
    use AddressKind::*;
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    if ip == Ipv6Addr::LOCALHOST {
        return Some(Loopback);
    }
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some(Unspecified);
    }
    let table: &[(&str, u32, AddressKind)] = &[
        ("fd00:ec2::254", 128, Metadata),
        ("::ffff:0:0", 96, Ipv4Embedded),
        ("::", 96, Ipv4Embedded),
        ("64:ff9b::", 96, Ipv4Embedded),
        ("64:ff9b:1::", 48, Ipv4Embedded),
        ("2002::", 16, Ipv4Embedded),
        ("2001::", 32, Ipv4Embedded),
        ("::", 8, Reserved),
        ("100::", 64, Reserved),
        ("2001:db8::", 32, Reserved),
        ("2001::", 23, Reserved),
        ("fc00::", 7, Private),
        ("fe80::", 10, LinkLocal),
        ("fec0::", 10, Reserved),
        ("ff00::", 8, Multicast),
    ];
    table.iter().find(|(net, prefix, _)| in_v6(ip, v6(net), *prefix)).map(|(_, _, kind)| *kind)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A resolver the test controls: names to addresses, and a record of every lookup.
    /// Nothing here opens a socket.
    #[derive(Debug, Default)]
    struct TableResolver {
        names: HashMap<&'static str, Vec<IpAddr>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Resolver for TableResolver {
        async fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
            self.asked.lock().unwrap().push(host.to_owned());
            self.names.get(host).cloned().ok_or_else(|| std::io::Error::other("NXDOMAIN"))
        }
    }

    fn resolver() -> TableResolver {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let names = HashMap::from([
            ("hooks.example.com", vec![ip("93.184.216.34")]),
            ("v6.example.com", vec![ip("2606:2800:220:1:248:1893:25c8:1946")]),
            ("internal.example.com", vec![ip("10.0.0.5")]),
            ("metadata.example.com", vec![ip("169.254.169.254")]),
            ("aws6.example.com", vec![ip("fd00:ec2::254")]),
            ("mixed.example.com", vec![ip("93.184.216.34"), ip("192.168.1.10")]),
            ("cgnat.example.com", vec![ip("100.100.1.1")]),
            ("mapped.example.com", vec![ip("::ffff:10.0.0.1")]),
            ("nat64.example.com", vec![ip("64:ff9b::a00:1")]),
            ("sixtofour.example.com", vec![ip("2002:a00:1::1")]),
            ("localhost", vec![ip("127.0.0.1"), ip("::1")]),
            ("empty.example.com", vec![]),
        ]);
        TableResolver { names, asked: Mutex::new(Vec::new()) }
    }

    #[tokio::test]
    async fn the_screening_table() {
        let strict = DestinationPolicy::default();
        let r = resolver();
        let refused: &[(&str, &str)] = &[
            ("http://hooks.example.com/", "https_required"),
            ("ftp://hooks.example.com/", "https_required"),
            ("https://user:pw@hooks.example.com/", "credentials_in_url"),
            ("not a url", "malformed_url"),
            ("https://internal.example.com/", "private"),
            ("https://metadata.example.com/latest", "metadata"),
            ("https://aws6.example.com/", "metadata"),
            ("https://mixed.example.com/", "private"),
            ("https://cgnat.example.com/", "cgnat"),
            ("https://mapped.example.com/", "ipv4_embedded"),
            ("https://nat64.example.com/", "ipv4_embedded"),
            ("https://sixtofour.example.com/", "ipv4_embedded"),
            ("https://localhost/", "loopback"),
            ("https://nowhere.example.com/", "unresolvable"),
            ("https://empty.example.com/", "unresolvable"),
            ("https://127.0.0.1/", "loopback"),
            ("https://127.1/", "loopback"),
            ("https://2130706433/", "loopback"),
            ("https://0x7f000001/", "loopback"),
            ("https://0x7f.0.0.1/", "loopback"),
            ("https://0177.0.0.1/", "loopback"),
            ("https://017700000001/", "loopback"),
            ("https://0/", "unspecified"),
            ("https://0.0.0.0/", "unspecified"),
            ("https://10.1.2.3/", "private"),
            ("https://0xa.1.2.3/", "private"),
            ("https://167772161/", "private"),
            ("https://172.16.0.1/", "private"),
            ("https://172.31.255.255/", "private"),
            ("https://192.168.0.1/", "private"),
            ("https://169.254.169.254/", "metadata"),
            ("https://2852039166/", "metadata"),
            ("https://169.254.1.1/", "link_local"),
            ("https://100.64.0.1/", "cgnat"),
            ("https://100.127.255.254/", "cgnat"),
            ("https://224.0.0.1/", "multicast"),
            ("https://255.255.255.255/", "broadcast"),
            ("https://192.0.2.1/", "reserved"),
            ("https://198.18.0.1/", "reserved"),
            ("https://[::1]/", "loopback"),
            ("https://[::]/", "unspecified"),
            ("https://[fe80::1]/", "link_local"),
            ("https://[fc00::1]/", "private"),
            ("https://[fd12:3456::1]/", "private"),
            ("https://[fd00:ec2::254]/", "metadata"),
            ("https://[::ffff:127.0.0.1]/", "ipv4_embedded"),
            ("https://[::ffff:8.8.8.8]/", "ipv4_embedded"),
            ("https://[::127.0.0.1]/", "ipv4_embedded"),
            ("https://[64:ff9b::7f00:1]/", "ipv4_embedded"),
            ("https://[64:ff9b:1::a00:1]/", "ipv4_embedded"),
            ("https://[2002:7f00:1::]/", "ipv4_embedded"),
            ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "ipv4_embedded"),
            ("https://[2001:db8::1]/", "reserved"),
            ("https://[ff02::1]/", "multicast"),
            ("https://1.2.3.4.5/", "malformed_url"),
            ("https://example.0x10/", "malformed_url"),
            ("https://0x7f.0.0.1.example/", "unresolvable"),
        ];
        for (url, reason) in refused {
            match screen(url, strict, &r).await {
                Err(e) => assert_eq!(e.reason(), *reason, "{url}: {e}"),
                Ok(c) => panic!("{url} was allowed to {}", c.addr),
            }
        }
        let allowed: &[(&str, &str)] = &[
            ("https://hooks.example.com/webhooks?shop=1", "93.184.216.34:443"),
            ("https://hooks.example.com:8443/", "93.184.216.34:8443"),
            ("https://v6.example.com/", "[2606:2800:220:1:248:1893:25c8:1946]:443"),
            ("https://93.184.216.34/", "93.184.216.34:443"),
            ("https://1572395042/", "93.184.216.34:443"),
            ("https://8.8.8.8/", "8.8.8.8:443"),
            ("https://172.32.0.1/", "172.32.0.1:443"),
            ("https://100.128.0.1/", "100.128.0.1:443"),
        ];
        for (url, addr) in allowed {
            let checked = screen(url, strict, &r).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(checked.addr.to_string(), *addr, "{url}");
            assert!(checked.tls);
        }
        let checked = screen("https://hooks.example.com:8443/a/b?x=1", strict, &r).await.unwrap();
        assert_eq!((checked.target(), checked.host_header()), ("/a/b?x=1".into(), "hooks.example.com:8443".into()));
        // Address hosts are never looked up; names are, once per screening.
        assert!(!r.asked.lock().unwrap().iter().any(|h| h.chars().all(|c| c.is_ascii_digit() || c == '.')));
    }

    #[tokio::test]
    async fn the_development_flag_allows_loopback_and_nothing_else() {
        let dev = DestinationPolicy { allow_loopback: true };
        let r = resolver();
        for url in ["http://127.0.0.1:9000/hook", "http://localhost:9000/", "https://127.0.0.1/", "http://[::1]:80/"] {
            let checked = screen(url, dev, &r).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(checked.addr.ip().is_loopback());
        }
        for (url, reason) in [
            ("http://hooks.example.com/", "https_required"),
            ("http://10.0.0.1/", "private"),
            ("https://internal.example.com/", "private"),
            ("http://169.254.169.254/", "metadata"),
            ("http://[::ffff:127.0.0.1]/", "ipv4_embedded"),
        ] {
            assert_eq!(screen(url, dev, &r).await.unwrap_err().reason(), reason, "{url}");
        }
    }
}
