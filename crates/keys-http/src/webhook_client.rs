//! The deliverer's HTTP client ([`WebhookClient`], keys-service's
//! `Outbound`): one `POST` per attempt on a connection of its own, over
//! TLS for `https://` (the Mozilla roots of `webpki-roots`, plus the
//! operator's `--webhook-ca-file`), within [`TIMEOUT`], never following a
//! redirect (a 3xx is an answer, and not a 2xx).
//!
//! **The SSRF guard.** The host is resolved here, each address is checked,
//! and the connection goes to the checked address itself: what a second
//! resolution would answer (DNS rebinding) never matters. Loopback,
//! private, shared, link-local, multicast, broadcast and unspecified
//! addresses (IPv4-mapped ones included) are refused unless the operator
//! allows private destinations.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use keys_service::webhooks::Outbound;
use keys_store::RecordedAuditEvent;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::handlers::audit_events::AuditEventDto;

/// Every attempt ends within this, connection and answer included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a receiver's answer read (the rest is dropped).
const MAX_ANSWER: usize = 64 * 1024;

/// Sends webhook deliveries (see the module documentation).
#[derive(Clone)]
pub struct WebhookClient {
    allow_private: bool,
    tls: TlsConnector,
    user_agent: String,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient").field("allow_private", &self.allow_private).finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client that trusts the Mozilla roots and the certificates of
    /// `extra_roots` (PEM), refusing private destinations unless
    /// `allow_private`.
    pub fn new(allow_private: bool, extra_roots: Option<&[u8]>) -> Result<Self, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|error| format!("the webhook CA file: {error}"))?;
                roots.add(certificate).map_err(|error| format!("the webhook CA file: {error}"))?;
            }
        }
        // ring, as for serving (crate::tls says why it is kept).
        #[allow(deprecated)]
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            allow_private,
            tls: TlsConnector::from(Arc::new(config)),
            user_agent: format!("keysd/{} (webhooks)", env!("CARGO_PKG_VERSION")),
        })
    }

    async fn send(&self, url: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Result<u16, String> {
        let url = url::Url::parse(url).map_err(|_| "the endpoint's URL does not parse".to_owned())?;
        let https = match url.scheme() {
            "https" => true,
            "http" if self.allow_private => false,
            _ => return Err("the endpoint's URL is not https://".to_owned()),
        };
        let host = url.host_str().ok_or("the endpoint's URL has no host")?.to_owned();
        let port = url.port_or_known_default().ok_or("the endpoint's URL has no port")?;
        let address = self.destination(&host, port).await?;
        // Errors say what failed, not the kernel's or the peer's words: the
        // deliveries list must not scan ports for its reader.
        let stream = TcpStream::connect(address).await.map_err(|_| format!("could not connect to {host}"))?;
        // The address connected to is the one checked.
        let peer = stream.peer_addr().map_err(|_| format!("could not connect to {host}"))?;
        if !self.allow_private && !public(peer.ip()) {
            return Err(format!("{host} is at {}, a private address: refused", peer.ip()));
        }
        let _ = stream.set_nodelay(true);
        let mut path = url.path().to_owned();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, &self.user_agent)
            .header(http::header::CONTENT_LENGTH, body.len());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|error| error.to_string())?;
        if https {
            let name = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host.clone()).map_err(|_| format!("{host} is not a TLS server name"))?,
            };
            let stream = self.tls.connect(name, stream).await.map_err(|_| format!("TLS with {host} failed"))?;
            exchange(TokioIo::new(stream), request).await
        } else {
            exchange(TokioIo::new(stream), request).await
        }
    }

    /// The first address of `host` that may be connected to.
    async fn destination(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|error| format!("resolving {host}: {error}"))?
                .collect(),
        };
        if self.allow_private {
            return addresses.first().copied().ok_or_else(|| format!("{host} has no address"));
        }
        match addresses.iter().find(|address| public(address.ip())) {
            Some(address) => Ok(*address),
            None => match addresses.first() {
                Some(address) => Err(format!(
                    "{host} resolves to {}, a loopback, private, link-local, multicast or unspecified address: refused \
                     (--webhook-allow-private-destinations allows it)",
                    address.ip()
                )),
                None => Err(format!("{host} has no address")),
            },
        }
    }
}

/// One request and its status on a fresh HTTP/1.1 connection.
async fn exchange<S>(io: TokioIo<S>, request: http::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|_| "HTTP/1.1 failed".to_owned())?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|_| "no HTTP answer".to_owned())?;
        let status = response.status().as_u16();
        // Read a little of the answer, so that the receiver sees it taken;
        // what it says does not matter.
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_ANSWER {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
        Ok(status)
    }
    .await;
    driver.abort();
    result
}

/// Whether an address is on the public internet (see the module
/// documentation for what is not). An IPv6 address that carries an IPv4
/// one (mapped, NAT64) is judged by it; the ones that tunnel to an address
/// keysd cannot see (6to4, Teredo, the deprecated IPv4-compatible form) are
/// refused whole.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && (c == 0 || c == 2))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 198 && b == 51 && c == 100)
                || (a == 203 && b == 0 && c == 113)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96): the IPv4 address it reaches.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., high, low] = segments;
                let v4 = std::net::Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
                return public(IpAddr::V4(v4));
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || segments[..6] == [0, 0, 0, 0, 0, 0]
                || segments[..2] == [0x64, 0xff9b]
                || first == 0x2002
                || segments[..2] == [0x2001, 0]
                || segments[..2] == [0x2001, 0x0db8]
                || segments[..4] == [0x0100, 0, 0, 0])
        }
    }
}

impl Outbound for WebhookClient {
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send + 'a>> {
        Box::pin(async move {
            match tokio::time::timeout(TIMEOUT, self.send(url, headers, body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
            }
        })
    }

    fn audit_data(&self, event: &RecordedAuditEvent) -> String {
        serde_json::to_string(&AuditEventDto::from(event)).unwrap_or_else(|_| "null".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!public(private.parse().expect("an address")), "{private}");
        }
        for open in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(public(open.parse().expect("an address")), "{open}");
        }
    }

    #[tokio::test]
    async fn a_name_of_the_loopback_is_refused_before_any_connection() {
        let client = WebhookClient::new(false, None).expect("a client");
        let refused = client.post("https://localhost:9/hook", Vec::new(), b"{}".to_vec()).await;
        let error = refused.expect_err("refused");
        assert!(error.contains("127.0.0.1") || error.contains("::1"), "{error}");
        assert!(error.contains("refused"), "{error}");
    }
}
