//! Which proxy an `ADD <url>` download goes through, chosen from the environment the way docker
//! chooses it: Go's `http.ProxyFromEnvironment` (golang.org/x/net/http/httpproxy).
//!
//! `HTTP_PROXY` serves `http://` URLs and `HTTPS_PROXY` serves `https://` ones (each also read in
//! lower case; the upper-case name wins when both are set and non-empty). A proxy written
//! without a scheme (`proxy:3128`) is taken as `http://proxy:3128`. There is no `ALL_PROXY`.
//! `NO_PROXY` is a comma-separated list of exceptions: `*` (everything), an IP address or CIDR
//! block, an optional `:port`, and domain names, where `example.com` covers the domain and its
//! subdomains and `.example.com` (or `*.example.com`) only the subdomains. `localhost` and
//! loopback addresses are never proxied, whatever the variables say. Go's refusal to use
//! `HTTP_PROXY` under CGI (`REQUEST_METHOD` set) is not copied: kiln is never a CGI program.
//! Proxies are `http://` or `https://` URLs (credentials in the URL are sent as Basic auth);
//! kiln's HTTP client is built without SOCKS, so a `socks5://` proxy makes the download fail.
//!
//! Everything here is pure: [`ProxyConfig::from_vars`] takes the variables from a lookup
//! function, so tests never touch the process environment.

use std::net::IpAddr;

use reqwest::Url;

/// The proxy settings read from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    http: Option<Url>,
    https: Option<Url>,
    no_proxy: NoProxy,
}

/// `NO_PROXY`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NoProxy {
    /// `*`: nothing is proxied.
    all: bool,
    rules: Vec<Rule>,
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// An address block: `10.0.0.0/8`.
    Cidr { net: IpAddr, bits: u8 },
    /// One address, on any port or one: `10.1.2.3`, `[::1]:8080`.
    Ip { ip: IpAddr, port: Option<String> },
    /// A domain suffix with its leading dot (`.example.com`); `exact` also covers the domain
    /// itself (the entry was written without a leading dot).
    Domain {
        suffix: String,
        exact: bool,
        port: Option<String>,
    },
}

impl ProxyConfig {
    /// The settings of this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The settings from `get`, which returns an environment variable's value.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        // Go's getEnvAny: the first of the names that is set and not empty.
        let any = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| get(n).filter(|v| !v.is_empty()))
                .unwrap_or_default()
        };
        Self {
            http: parse_proxy(&any(["HTTP_PROXY", "http_proxy"])),
            https: parse_proxy(&any(["HTTPS_PROXY", "https_proxy"])),
            no_proxy: NoProxy::parse(&any(["NO_PROXY", "no_proxy"])),
        }
    }

    /// The proxy for a request to `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &Url) -> Option<Url> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        let port = url.port_or_known_default().map(|p| p.to_string());
        // `host_str` brackets an IPv6 address; Go's `Hostname` does not.
        let host = url.host_str()?;
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = name.parse().ok();
        if name == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return None;
        }
        (!self.no_proxy.exempts(&name, port.as_deref(), ip)).then(|| proxy.clone())
    }
}

/// Go's `parseProxy`: a URL, or `http://` plus the value when it has no scheme or host.
fn parse_proxy(value: &str) -> Option<Url> {
    if value.is_empty() {
        return None;
    }
    match Url::parse(value) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => Some(url),
        parsed => Url::parse(&format!("http://{value}")).ok().or(parsed.ok()),
    }
}

impl NoProxy {
    fn parse(value: &str) -> Self {
        let mut out = NoProxy::default();
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                return NoProxy {
                    all: true,
                    rules: Vec::new(),
                };
            }
            if let Some(rule) = parse_cidr(&entry) {
                out.rules.push(rule);
                continue;
            }
            let (host, port) = match split_host_port(&entry) {
                Some(("", _)) => continue,
                Some((host, port)) => (host.to_owned(), Some(port.to_owned())),
                None => (entry.clone(), None),
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.rules.push(Rule::Ip { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(&host);
            if host.is_empty() {
                continue;
            }
            let (suffix, exact) = match host.starts_with('.') {
                true => (host.to_owned(), false),
                false => (format!(".{host}"), true),
            };
            out.rules.push(Rule::Domain {
                suffix,
                exact,
                port,
            });
        }
        out
    }

    /// Whether a request to `host` (lower case) on `port` goes direct.
    fn exempts(&self, host: &str, port: Option<&str>, ip: Option<IpAddr>) -> bool {
        let port_ok = |want: &Option<String>| want.is_none() || want.as_deref() == port;
        self.all
            || self.rules.iter().any(|rule| match rule {
                Rule::Cidr { net, bits } => ip.is_some_and(|ip| in_block(ip, *net, *bits)),
                Rule::Ip { ip: want, port: p } => ip == Some(*want) && port_ok(p),
                Rule::Domain {
                    suffix,
                    exact,
                    port: p,
                } => {
                    (host.ends_with(suffix.as_str()) || (*exact && host == &suffix[1..]))
                        && port_ok(p)
                }
            })
    }
}

/// `10.0.0.0/8` or `fd00::/8`.
fn parse_cidr(entry: &str) -> Option<Rule> {
    let (ip, bits) = entry.split_once('/')?;
    let net: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(Rule::Cidr { net, bits })
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` without exactly one port.
fn split_host_port(entry: &str) -> Option<(&str, &str)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = entry.split_once(':')?;
    (!port.contains(':')).then_some((host, port))
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let mask = |width: u32| -> u128 {
        match u32::from(bits) {
            0 => 0,
            b => (!0u128 << (width - b)) & (!0u128 >> (128 - width)),
        }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = mask(32);
            u128::from(u32::from(a)) & m == u128::from(u32::from(b)) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = mask(128);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> ProxyConfig {
        ProxyConfig::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn proxy_selection() {
        let env = [
            ("HTTP_PROXY", "http://proxy.example:3128"),
            ("https_proxy", "secure-proxy:8443"),
            (
                "NO_PROXY",
                " internal.example, .corp.example,*.wild.example, 10.0.0.0/8, 192.168.1.5, \
                 ports.example:8080, [fd00::1]:9000, ::2 ,",
            ),
        ];
        let c = config(&env);
        let cases = [
            ("http://example.com/x", Some("http://proxy.example:3128/")),
            ("https://example.com/x", Some("http://secure-proxy:8443/")),
            ("ftp://example.com/x", None),
            // Loopback is never proxied.
            ("http://localhost:8080/x", None),
            ("http://127.0.0.1/x", None),
            ("http://[::1]/x", None),
            // `internal.example` covers itself and its subdomains.
            ("http://internal.example/x", None),
            ("http://a.internal.example/x", None),
            (
                "http://xinternal.example/x",
                Some("http://proxy.example:3128/"),
            ),
            // A leading dot or `*.` covers subdomains only.
            ("http://corp.example/x", Some("http://proxy.example:3128/")),
            ("http://a.corp.example/x", None),
            ("http://wild.example/x", Some("http://proxy.example:3128/")),
            ("http://b.wild.example/x", None),
            // Names are compared in lower case.
            ("http://A.Internal.Example/x", None),
            ("http://10.1.2.3/x", None),
            ("http://11.1.2.3/x", Some("http://proxy.example:3128/")),
            ("http://192.168.1.5/x", None),
            ("http://192.168.1.6/x", Some("http://proxy.example:3128/")),
            // A port in the rule must match the request's (default ports count).
            ("http://ports.example:8080/x", None),
            ("http://ports.example/x", Some("http://proxy.example:3128/")),
            ("https://[fd00::1]:9000/x", None),
            ("https://[fd00::1]/x", Some("http://secure-proxy:8443/")),
            ("https://[::2]/x", None),
        ];
        for (url, want) in cases {
            let got = c.proxy_for(&Url::parse(url).unwrap());
            assert_eq!(got.as_ref().map(Url::as_str), want, "{url}");
        }
    }

    #[test]
    fn variables() {
        let url = Url::parse("http://example.com/").unwrap();
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars<'_>, Option<&str>)] = &[
            (&[], None),
            // Upper case wins; an empty value counts as unset.
            (
                &[
                    ("HTTP_PROXY", "http://up:1"),
                    ("http_proxy", "http://low:2"),
                ],
                Some("http://up:1/"),
            ),
            (
                &[("HTTP_PROXY", ""), ("http_proxy", "http://low:2")],
                Some("http://low:2/"),
            ),
            (
                &[("HTTP_PROXY", "10.0.0.1:3128")],
                Some("http://10.0.0.1:3128/"),
            ),
            (
                &[("HTTP_PROXY", "http://user:pw@p:1")],
                Some("http://user:pw@p:1/"),
            ),
            // HTTPS_PROXY does not serve http URLs, and there is no ALL_PROXY.
            (&[("HTTPS_PROXY", "http://s:1")], None),
            (&[("ALL_PROXY", "http://all:1")], None),
            (&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "*")], None),
            (
                &[("HTTP_PROXY", "http://p:1"), ("no_proxy", "example.com")],
                None,
            ),
        ];
        for (vars, want) in cases {
            let got = config(vars).proxy_for(&url);
            assert_eq!(got.as_ref().map(Url::as_str), *want, "{vars:?}");
        }
    }

    #[test]
    fn address_blocks() {
        let cases = [
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("192.168.1.0/24", "192.168.1.200", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("10.0.0.0/8", "fd00::1", false),
        ];
        for (block, ip, want) in cases {
            let Some(Rule::Cidr { net, bits }) = parse_cidr(block) else {
                panic!("{block} did not parse");
            };
            assert_eq!(
                in_block(ip.parse().unwrap(), net, bits),
                want,
                "{block} {ip}"
            );
        }
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("host:80"), Some(("host", "80")));
        assert_eq!(split_host_port("host"), None);
    }
}
