//! Origins and the patterns of `allowed_domains` (docs/API.md, Public keys).
//!
//! An [`Origin`] is what a browser sends (`scheme://host[:port]`) or a bare
//! host, parsed as the WHATWG URL standard parses it (the `url` crate), so
//! that keysd reads a host exactly as the browser that sent it does: a
//! backslash ends the host, percent-escapes in a host are decoded and then
//! refused, internationalised names become their `xn--` form. Anything that
//! is not an origin (userinfo, a path, a query, a fragment, another scheme
//! than `http`/`https`, an invalid host) parses to nothing, which is
//! `origin_not_allowed`.
//!
//! A [`DomainPattern`] is an exact host (`app.example.com`), a wildcard
//! over the subdomains of a registrable domain (`*.example.com`: not the
//! apex), or either behind a scheme and an optional port
//! (`https://app.example.com:8443`), which pins both: without a port the
//! scheme's default. A wildcard over a single label or a public suffix
//! (`*.com`, `*.co.uk`, `*.github.io`, per the Public Suffix List compiled
//! into the `psl` crate) is refused when it is set.

use url::{Host, Url};

use crate::CoreError;

/// The schemes of the web origins keysd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// A request's origin, parsed. The scheme and port are unknown for a bare
/// host without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: Option<Scheme>,
    /// Lower-case ASCII, without a trailing dot.
    host: String,
    /// The effective port: explicit, or the scheme's default.
    port: Option<u16>,
}

impl Origin {
    /// `None` for anything that is not an origin or a bare host.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        // After the scheme, an origin is an authority alone: nothing that
        // ends it (a path, even `/`, a query, a fragment) or adds userinfo.
        // `null` is the opaque origin of sandboxed documents, never a host.
        let (authority, scheme_given) = match text.split_once("://") {
            Some((_, authority)) => (authority, true),
            None => (text, false),
        };
        if authority.is_empty() || text.eq_ignore_ascii_case("null") || authority.contains(['/', '\\', '@', '?', '#']) {
            return None;
        }
        let url = if scheme_given { Url::parse(text).ok()? } else { Url::parse(&format!("http://{text}")).ok()? };
        let scheme = Scheme::parse(url.scheme())?;
        let plain = url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !plain {
            return None;
        }
        let host = match url.host()? {
            Host::Domain(domain) => {
                let domain = domain.strip_suffix('.').unwrap_or(domain);
                is_host(domain).then(|| domain.to_owned())?
            }
            Host::Ipv4(address) => address.to_string(),
            // No pattern names an IPv6 literal.
            Host::Ipv6(_) => return None,
        };
        let (scheme, port) =
            if scheme_given { (Some(scheme), url.port_or_known_default()) } else { (None, url.port()) };
        Some(Self { scheme, host, port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The host half of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    Exact(String),
    /// Every subdomain of this apex, not the apex itself.
    Subdomains(String),
}

/// One entry of `allowed_domains` (see the module doc). Its text is stored
/// in canonical form: lower case, `xn--` labels, no trailing dot, no
/// default port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    text: String,
    host: HostPattern,
    /// Scheme and effective port, when pinned.
    pinned: Option<(Scheme, u16)>,
}

impl DomainPattern {
    pub const MAX_PER_KEY: usize = 100;

    /// A pattern as a client sets it: wildcards over a public suffix are
    /// refused.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let pattern = Self::read(text, true)?;
        if let HostPattern::Subdomains(apex) = &pattern.host {
            let single_label = !apex.contains('.');
            if single_label || psl::suffix_str(apex) == Some(apex.as_str()) {
                return Err(CoreError::WildcardTooBroad(echo(text)));
            }
        }
        Ok(pattern)
    }

    /// A pattern as storage holds it: what [`parse`](Self::parse) accepts,
    /// and the broad wildcards that earlier versions accepted (refusing
    /// them on the way out of the database would make their key
    /// unreadable; they can be replaced, not stored anew).
    pub fn restore(text: &str) -> Result<Self, CoreError> {
        Self::read(text, false)
    }

    /// Reads a pattern; `strict` (what clients send) also refuses an IPv4
    /// address in any form but dotted decimal (`0`, `0x7f.1`, `010.0.0.1`
    /// are addresses to the WHATWG parser, never what an operator means).
    fn read(text: &str, strict: bool) -> Result<Self, CoreError> {
        let invalid = || CoreError::InvalidDomain(echo(text));
        let lower = text.trim().to_ascii_lowercase();
        let (pinned_scheme, authority) = match lower.split_once("://") {
            Some((scheme, authority)) => (Some(Scheme::parse(scheme).ok_or_else(invalid)?), authority),
            None => (None, lower.as_str()),
        };
        let (host_text, port) = match authority.rsplit_once(':') {
            Some((host, port)) if pinned_scheme.is_some() => {
                let port = port.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(invalid)?;
                (host, Some(port))
            }
            Some(_) => return Err(invalid()),
            None => (authority, None),
        };
        let host_text = host_text.strip_suffix('.').unwrap_or(host_text);
        let (wildcard, apex) = match host_text.strip_prefix("*.") {
            Some(apex) => (true, apex),
            None => (false, host_text),
        };
        // The WHATWG host parser, for IDNA; then the stricter rule of a DNS
        // name (letters, digits, hyphens), which also refuses `*` inside.
        let ascii = match Host::parse(apex).map_err(|_| invalid())? {
            Host::Domain(domain) if is_host(&domain) => domain,
            Host::Ipv4(address) if !wildcard && (!strict || address.to_string() == apex) => address.to_string(),
            _ => return Err(invalid()),
        };
        let host = if wildcard { HostPattern::Subdomains(ascii) } else { HostPattern::Exact(ascii) };
        let pinned = pinned_scheme.map(|scheme| (scheme, port.unwrap_or_else(|| scheme.default_port())));
        let host_text = match &host {
            HostPattern::Exact(host) => host.clone(),
            HostPattern::Subdomains(apex) => format!("*.{apex}"),
        };
        let text = match pinned {
            None => host_text,
            Some((scheme, port)) if port == scheme.default_port() => format!("{}://{host_text}", scheme.as_str()),
            Some((scheme, port)) => format!("{}://{host_text}:{port}", scheme.as_str()),
        };
        Ok(Self { text, host, pinned })
    }

    /// Parses a whole `allowed_domains` list.
    pub fn parse_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, CoreError> {
        let list = items.into_iter().map(Self::parse).collect::<Result<Vec<_>, _>>()?;
        if list.len() > Self::MAX_PER_KEY {
            return Err(CoreError::TooManyDomains { max: Self::MAX_PER_KEY });
        }
        Ok(list)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `origin` is allowed by this pattern.
    pub fn allows(&self, origin: &Origin) -> bool {
        let host = &origin.host;
        let host_matches = match &self.host {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Subdomains(apex) => {
                host.len() > apex.len() + 1
                    && host.ends_with(apex.as_str())
                    && host.as_bytes()[host.len() - apex.len() - 1] == b'.'
            }
        };
        host_matches
            && self.pinned.is_none_or(|(scheme, port)| origin.scheme == Some(scheme) && origin.port == Some(port))
    }
}

/// A DNS name of letters, digits and hyphens.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Client text echoed in an error, shortened.
fn echo(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_stored_in_canonical_form() {
        for (text, canonical) in [
            ("APP.Example.com.", "app.example.com"),
            ("*.Example.COM", "*.example.com"),
            ("https://app.example.com", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("HTTP://app.example.com:8080", "http://app.example.com:8080"),
            ("https://*.example.com", "https://*.example.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("127.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(DomainPattern::parse(text).map(|pattern| pattern.text), Ok(canonical.to_owned()), "{text}");
        }
    }

    #[test]
    fn an_address_is_taken_in_dotted_decimal_only() {
        // Addresses to the WHATWG parser, which schemathesis sent as hosts.
        for text in ["0", "0000000000", "2130706433", "0x7f.1", "010.0.0.1", "https://0:8443"] {
            assert!(DomainPattern::parse(text).is_err(), "{text}");
        }
        // What earlier versions stored is still read back.
        assert_eq!(DomainPattern::restore("0").map(|pattern| pattern.text), Ok("0.0.0.0".to_owned()));
    }
}
