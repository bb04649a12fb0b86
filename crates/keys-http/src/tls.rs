//! HTTPS for [`crate::serve`]: a certificate and key read from PEM files
//! ([`Tls::load`]), served by rustls (its `ring` provider) over TLS 1.2 and
//! 1.3 with ALPN `h2` and `http/1.1`, and re-read while the server runs.
//!
//! **Rotation without a restart.** The certificate a handshake presents is
//! whatever [`CurrentCertificate`] holds at that moment (rustls asks a
//! `ResolvesServerCert` for it on every handshake). A thread re-reads both
//! files every [`RELOAD_INTERVAL`] and swaps in a new pair when their
//! contents changed and they make a valid pair: new handshakes get it,
//! connections already open keep the session they negotiated. A pair that
//! does not load (unreadable, not PEM, a key that does not match the
//! certificate) leaves the previous one in place; it is logged as a warning
//! when it is still the same at the next poll, since a rotation that writes
//! the two files one after the other passes through a mismatched pair for a
//! moment. Errors name the file and the reason, never the key's contents.
//!
//! **Plain HTTP on the HTTPS port.** A connection whose first byte is not
//! a TLS handshake record is not handed to rustls: one that looks like an
//! HTTP request gets a `400` saying the port speaks HTTPS, then the
//! connection closes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{version, InconsistentKeys, ServerConfig};
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::reload::{Reload, Seen};

/// How often the certificate and key files are read again: a changed pair
/// is served within this (twice this for the warning about a bad one).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The ALPN protocols offered, in keysd's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The first byte of a TLS record that carries a handshake message (a
/// ClientHello opens every TLS connection with one).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP request to the HTTPS port is answered.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    content-length: 41\r\n\
    connection: close\r\n\
    \r\n\
    This port speaks HTTPS: use an https URL\n";

/// A certificate or key file that does not give a certificate to serve.
/// Its message is one line naming the file; it never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", file.display())]
    Unreadable { file: PathBuf, source: io::Error },
    #[error("{}: no PEM certificate in it", file.display())]
    NoCertificate { file: PathBuf },
    #[error("{}: not a valid PEM certificate chain: {reason}", file.display())]
    BadCertificate { file: PathBuf, reason: String },
    #[error("{}: {reason}", file.display())]
    BadKey { file: PathBuf, reason: String },
    #[error("{} does not match the certificate of {}", key_file.display(), certificate_file.display())]
    KeyMismatch { certificate_file: PathBuf, key_file: PathBuf },
    #[error("cannot make a TLS configuration: {0}")]
    Config(String),
}

/// HTTPS for a listener: the rustls acceptor and the certificate it
/// presents, kept up to date with its files. Cheap to clone; the files are
/// watched until the last clone is dropped.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCertificate>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("current", &self.current).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain (PEM, leaf first) and its private key
    /// (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC; not encrypted), and starts
    /// watching both files (see the module documentation).
    pub fn load(certificate_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let files = Files { certificate: certificate_file.into(), key: key_file.into() };
        // rustls 0.23.48 deprecates the ring provider because it has no
        // post-quantum key exchange (X25519MLKEM768 is aws-lc-rs's): keysd
        // keeps ring, already in its tree, rather than a C build with cmake
        // (docs/SECURITY.md says what this costs).
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let pair = files.read()?;
        let certified = pair.certified_key(&files, &provider)?;
        tracing::info!(
            certificate_file = %files.certificate.display(),
            fingerprint = %fingerprint(&certified),
            "TLS certificate loaded"
        );
        warn_if_others_may_read(&files.key);
        let current = Arc::new(CurrentCertificate {
            served: RwLock::new(Arc::new(certified)),
            reload: Mutex::new(Reload::new(pair.digest)),
            files,
            provider: Arc::clone(&provider),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        crate::reload::watch("tls", RELOAD_INTERVAL, Arc::downgrade(&current), CurrentCertificate::refresh);
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), current })
    }

    /// The TLS side of a new connection: the handshake, or the `400` of a
    /// plain HTTP request. The caller bounds it in time.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<Stream> {
        let mut first = [0_u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                answer_plain_http(stream).await;
            }
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a TLS handshake (plain HTTP?)"));
        }
        Ok(Stream::Tls(Box::new(self.acceptor.accept(stream).await?)))
    }
}

/// Answers what looks like a plain HTTP request, then closes.
async fn answer_plain_http(mut stream: TcpStream) {
    // Read the start of the request first, and what follows until the
    // client closes (a moment at most): a socket closed with unread bytes
    // is reset, and the client may lose the answer with it.
    let mut buffer = [0_u8; 4096];
    let _ = stream.read(&mut buffer).await;
    if stream.write_all(PLAIN_HTTP_ANSWER).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// The certificate and key files.
#[derive(Debug)]
struct Files {
    certificate: PathBuf,
    key: PathBuf,
}

/// What the files held at one reading: their bytes and a digest of both.
struct Pair {
    certificate: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    digest: [u8; 32],
}

impl Files {
    fn read(&self) -> Result<Pair, TlsError> {
        let read =
            |file: &Path| std::fs::read(file).map_err(|source| TlsError::Unreadable { file: file.to_owned(), source });
        let certificate = read(&self.certificate)?;
        let key = Zeroizing::new(read(&self.key)?);
        let mut digest = Sha256::new();
        digest.update((certificate.len() as u64).to_be_bytes());
        digest.update(&certificate);
        digest.update(key.as_slice());
        Ok(Pair { certificate, key, digest: digest.finalize().into() })
    }
}

impl Pair {
    /// The certificate chain and the key as rustls serves them, when they
    /// are well-formed and belong together.
    fn certified_key(&self, files: &Files, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::BadCertificate { file: files.certificate.clone(), reason: error.to_string() })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { file: files.certificate.clone() });
        }
        let bad_key = |reason: String| TlsError::BadKey { file: files.key.clone(), reason };
        // The PEM parser's own messages may quote a line of the file: a
        // key file's errors are said in keysd's words.
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| {
            bad_key(match error {
                pem::Error::NoItemsFound => {
                    "no unencrypted PEM private key in it (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)".to_owned()
                }
                _ => "not a well-formed PEM private key".to_owned(),
            })
        })?;
        let signing_key = provider.key_provider.load_private_key(key).map_err(|error| bad_key(error.to_string()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(tokio_rustls::rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
            Err(tokio_rustls::rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                Err(TlsError::KeyMismatch { certificate_file: files.certificate.clone(), key_file: files.key.clone() })
            }
            Err(error) => Err(TlsError::BadCertificate { file: files.certificate.clone(), reason: error.to_string() }),
        }
    }
}

/// Warns when users other than the key file's owner may read it (its
/// group or everyone): the key is as secret as a service token.
fn warn_if_others_may_read(key_file: &Path) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(key_file) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                key_file = %key_file.display(),
                mode = format!("{:o}", mode & 0o777),
                "the TLS key file is readable by other users; chmod 600 it"
            );
        }
    }
}

/// The SHA-256 of the leaf certificate, in hex: what operators compare
/// with `openssl x509 -fingerprint -sha256`.
fn fingerprint(certified: &CertifiedKey) -> String {
    certified
        .end_entity_cert()
        .map(|leaf| Sha256::digest(leaf.as_ref()).iter().map(|byte| format!("{byte:02X}")).collect())
        .unwrap_or_default()
}

/// The pair handshakes are served, and what the watcher last saw.
struct CurrentCertificate {
    served: RwLock<Arc<CertifiedKey>>,
    reload: Mutex<Reload>,
    files: Files,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is the provider's signing key: only its file is named.
        f.debug_struct("CurrentCertificate").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.served.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl CurrentCertificate {
    /// Reads the files; serves their pair when it changed and loads.
    fn refresh(&self) {
        // Every update of the state is whole: a poisoned lock holds a valid one.
        let mut reload = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let read = self.files.read();
        let seen = match &read {
            Ok(pair) => Seen::Contents(pair.digest),
            Err(error) => Seen::Unreadable(error.to_string()),
        };
        if !reload.wants(&seen) {
            return;
        }
        match read.and_then(|pair| pair.certified_key(&self.files, &self.provider)) {
            Ok(certified) => {
                tracing::info!(
                    certificate_file = %self.files.certificate.display(),
                    fingerprint = %fingerprint(&certified),
                    "TLS certificate reloaded: new handshakes get it"
                );
                *self.served.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                warn_if_others_may_read(&self.files.key);
                reload.loaded(seen);
            }
            Err(error) => {
                if reload.failed(seen) {
                    tracing::warn!(%error, "TLS certificate not reloaded: the previous one is still served");
                }
            }
        }
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(context, bytes),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, bytes),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(context, buffers),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(context, buffers),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(context),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_says_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{text}");
    }
}
