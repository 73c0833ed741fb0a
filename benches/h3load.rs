//! A small HTTP/3 load generator for `benches/h3.sh`: `C` QUIC connections,
//! `S` requests in flight on each, for `D` seconds; prints the count.
//! (Debian's h2load is built without HTTP/3, so the benchmark brings its
//! own client: the `h3` crate's, over quinn.)
//!
//!     h3load ADDR CONNS STREAMS SECONDS PATH

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Buf;

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, conns, streams, secs, path] = &args[..] else {
        eprintln!("usage: h3load ADDR CONNS STREAMS SECONDS PATH");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR");
    let (conns, streams): (usize, usize) = (conns.parse().unwrap(), streams.parse().unwrap());
    let secs: f64 = secs.parse().unwrap();
    let path = path.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let conn = endpoint
                .connect(addr, "localhost")
                .unwrap()
                .await
                .expect("QUIC");
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
                .await
                .expect("h3");
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
            for _ in 0..streams {
                let mut send = send.clone();
                let (ok, bad, path) = (ok.clone(), bad.clone(), path.clone());
                tasks.spawn(async move {
                    while Instant::now() < deadline {
                        let req = hyper::Request::get(format!("https://localhost{path}"))
                            .body(())
                            .unwrap();
                        let done = async {
                            let mut s = send.send_request(req).await?;
                            s.finish().await?;
                            let resp = s.recv_response().await?;
                            while let Some(mut c) = s.recv_data().await? {
                                c.advance(c.remaining());
                            }
                            Ok::<_, Box<dyn std::error::Error>>(resp.status().is_success())
                        };
                        match done.await {
                            Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => bad.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    println!(
        "requests {ok} errors {bad} seconds {elapsed:.2} rps {:.0}",
        ok as f64 / elapsed
    );
}
