//! TLS for the local stand-ins: a private CA (the gateway trusts it through
//! `AIHUB_UPSTREAM_CA_FILE`) and a server that speaks HTTP/2 or HTTP/1.1 by ALPN, as OpenRouter
//! and Gemini do.

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

/// PEM files of a private CA and of a certificate it signed for 127.0.0.1 and localhost.
pub struct CaFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub fn private_ca() -> CaFiles {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "AI Hub test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
    let dir = std::env::temp_dir().join(format!("aihub-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("tls dir");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("pem");
        path.display().to_string()
    };
    CaFiles {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
    }
}

pub fn acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(cert).expect("certificate pem")];
    let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves `app` over TLS until the task is aborted; `per_connection` may add to the router of
/// each connection (its connect info, say).
pub async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    per_connection: impl Fn(Router) -> Router + Clone + Send + 'static,
) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (acceptor, app, per_connection) =
            (acceptor.clone(), app.clone(), per_connection.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(socket).await else {
                return;
            };
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // One connection may carry every stream of a gateway.
            builder.http2().max_concurrent_streams(1_000_000);
            let _ = builder
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(per_connection(app)),
                )
                .await;
        });
    }
}
