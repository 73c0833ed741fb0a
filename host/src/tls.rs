//! Certificates for TLS termination (TCP) and QUIC: loaded from PEM files,
//! chosen by SNI, swapped whole when a file changes.
//!
//! One [`Certs`] serves both listeners: rustls asks it for a key on every
//! handshake, so a reload reaches the next handshake on both without
//! rebuilding a config, and open connections keep the key they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate pair was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate file could not be read or parsed.
    #[error("{path}: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file could not be read or parsed, or does not match.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// `--tls-cert` and `--tls-key` not given in pairs.
    #[error("--tls-cert and --tls-key must come in pairs (got {certs} and {keys})")]
    Unpaired {
        /// Certificates given.
        certs: usize,
        /// Keys given.
        keys: usize,
    },
    /// The development certificate could not be made.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// The only provider used: ring, given to every builder explicitly so the
/// process-wide default never matters.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One key and the names it may answer for.
#[derive(Debug)]
struct Entry {
    /// Lower-case DNS names from the certificate (`*.example.com` allowed).
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// One generation of certificates: the first pair is the default.
#[derive(Debug, Default)]
pub struct CertSet {
    entries: Vec<Entry>,
}

impl CertSet {
    /// Loads each `(cert, key)` pair; any failure fails the whole set.
    pub fn load(pairs: &[(PathBuf, PathBuf)]) -> Result<CertSet, CertError> {
        let entries = pairs
            .iter()
            .map(|(c, k)| load_pair(c, k))
            .collect::<Result<_, _>>()?;
        Ok(CertSet { entries })
    }

    /// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn self_signed() -> Result<CertSet, CertError> {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names)
                .map_err(|e| CertError::Generate(e.to_string()))?;
        let key = CertifiedKey::from_der(
            vec![cert.der().clone()],
            PrivateKeyDer::from(signing_key),
            &provider(),
        )
        .map_err(|e| CertError::Generate(e.to_string()))?;
        Ok(CertSet {
            entries: vec![Entry {
                names: vec!["localhost".into()],
                key: Arc::new(key),
            }],
        })
    }

    /// The key for `name` (exact, then one-label wildcard), else the first.
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            for want in std::iter::once(name).chain(wildcard.as_deref()) {
                if let Some(e) = self
                    .entries
                    .iter()
                    .find(|e| e.names.iter().any(|n| n == want))
                {
                    return Some(e.key.clone());
                }
            }
        }
        self.entries.first().map(|e| e.key.clone())
    }
}

/// Warns about a certificate outside its validity period: clients refuse
/// it, but it is still loaded (a certificate that expired over a weekend
/// serves clients that accept it, and the log says what to replace).
fn warn_if_outside_validity(path: &Path, leaf: &[u8]) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf) else {
        return;
    };
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now().timestamp();
    if validity.not_after.timestamp() < now {
        tracing::warn!(
            file = %path.display(),
            not_after = %validity.not_after,
            "certificate has expired; clients will refuse it"
        );
    } else if validity.not_before.timestamp() > now {
        tracing::warn!(
            file = %path.display(),
            not_before = %validity.not_before,
            "certificate is not valid yet; clients will refuse it"
        );
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<Entry, CertError> {
    let bad_cert = |reason: String| CertError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad_cert("no PEM certificate in the file".into()))?;
    warn_if_outside_validity(cert, leaf);
    let names = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| bad_cert(format!("not a usable certificate: {e}")))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| CertError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Parses the key and checks that it belongs to the certificate.
    let key = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| CertError::Key {
        path: key.to_path_buf(),
        reason: match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "this key does not belong to the certificate in {}",
                cert.display()
            ),
            e => e.to_string(),
        },
    })?;
    Ok(Entry {
        names,
        key: Arc::new(key),
    })
}

/// The live certificates, shared by the TLS and QUIC listeners.
#[derive(Debug)]
pub struct Certs {
    set: ArcSwap<CertSet>,
    pairs: Vec<(PathBuf, PathBuf)>,
}

impl Certs {
    /// Certificates from `pairs`, or a self-signed one when `pairs` is
    /// empty and `dev` is set.
    pub fn new(pairs: Vec<(PathBuf, PathBuf)>) -> Result<Arc<Certs>, CertError> {
        let set = if pairs.is_empty() {
            CertSet::self_signed()?
        } else {
            CertSet::load(&pairs)?
        };
        Ok(Arc::new(Certs {
            set: ArcSwap::from_pointee(set),
            pairs,
        }))
    }

    /// True if the certificates came from files (not generated).
    pub fn from_files(&self) -> bool {
        !self.pairs.is_empty()
    }

    /// The files, to watch.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.pairs
            .iter()
            .flat_map(|(c, k)| [c.as_path(), k.as_path()])
    }

    /// Reads the files again. A bad file leaves the current set serving.
    pub fn reload(&self) -> Result<(), CertError> {
        let set = CertSet::load(&self.pairs)?;
        self.set.store(Arc::new(set));
        Ok(())
    }

    /// A rustls config for TLS over TCP: TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1.
    pub fn tcp_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// A rustls config for QUIC: TLS 1.3 only, ALPN h3.
    pub fn quic_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h3".to_vec()];
        cfg
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls lower-cases the SNI name.
        self.set.load().pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(
            hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn names_choose_the_pair_and_the_first_is_the_default() {
        let dir = std::env::temp_dir().join(format!("sy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = pair(&dir, "a", &["a.test"]);
        let b = pair(&dir, "b", &["b.test", "*.wild.test"]);
        let set = CertSet::load(&[a.clone(), b.clone()]).unwrap();
        let key_of = |n: Option<&str>| set.pick(n).unwrap().cert[0].clone();
        let ka = set.entries[0].key.cert[0].clone();
        let kb = set.entries[1].key.cert[0].clone();
        assert_eq!(key_of(Some("b.test")), kb);
        assert_eq!(key_of(Some("x.wild.test")), kb);
        assert_eq!(key_of(Some("a.test")), ka);
        assert_eq!(key_of(Some("other.test")), ka);
        assert_eq!(key_of(None), ka);
        // A key that is not the certificate's is refused, naming the file.
        let err = CertSet::load(&[(a.0.clone(), b.1.clone())]).unwrap_err();
        assert!(err.to_string().contains("b.key"), "{err}");
        std::fs::write(&a.0, "not pem").unwrap();
        let err = CertSet::load(&[a]).unwrap_err();
        assert!(err.to_string().contains("a.crt"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
