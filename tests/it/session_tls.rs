//! TLS against a private CA, on the real binary: a loopback `wss://` front (rustls,
//! certificates from a CA generated here with rcgen) before the real simulators.
//! Without `ca_file` the server is refused and the reason recorded as a
//! `socket_error`; with it events are recorded, over `wss://` and over the Navixy
//! `https://` login; a certificate for another host name is refused even with the CA.

use crate::support::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};

/// A CA and a way to issue server certificates for given names.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wsvault test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A rustls server configuration with a certificate for `names` signed by the CA.
    fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// Terminates TLS on a loopback port and forwards the plain stream to `backend`.
async fn tls_front(config: Arc<ServerConfig>, backend: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: fine.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    addr
}

fn rpc_source(name: &str, url: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|p| format!("ca_file = \"{p}\"\n"))
        .unwrap_or_default();
    jsonrpc_source(name, url, -1) + &ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_is_refused_without_ca_file_and_trusted_with_it() {
    let db = sqlite_database();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("private-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let ca_path = ca_path.to_str().unwrap().to_string();

    let rpc = JsonRpcSim::start(
        ([127, 0, 0, 1], 0).into(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(20),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let navixy = NavixySim::start(([127, 0, 0, 1], 0).into(), NavixySimConfig::default())
        .await
        .unwrap();
    let good = ca.server(&["127.0.0.1", "localhost"]);
    let rpc_front = tls_front(good.clone(), rpc.addr()).await;
    let navixy_front = tls_front(good, navixy.addr()).await;
    let other_name = tls_front(ca.server(&["example.invalid"]), rpc.addr()).await;

    let sources = rpc_source("untrusted", &format!("wss://{rpc_front}/app"), None)
        + &rpc_source("trusted", &format!("wss://{rpc_front}/app"), Some(&ca_path))
        + &rpc_source(
            "mismatch",
            &format!("wss://{other_name}/app"),
            Some(&ca_path),
        )
        + &format!(
            r#"
[[sources]]
name = "login"
kind = "navixy"
url = "wss://{navixy_front}/v2/event/subscription"
login = "demo@example.com"
password = "demo-password"
ca_file = "{ca_path}"
"#
        );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    let store = daemon_store(&daemon, &db).await;

    wait_count(
        &store,
        Some(&daemon),
        "notifications WHERE source = 'trusted'",
        |n| n > 0,
    )
    .await;
    wait_count(
        &store,
        Some(&daemon),
        "tracker_states WHERE source = 'login'",
        |n| n > 0,
    )
    .await;
    for source in ["untrusted", "mismatch"] {
        wait_count(
            &store,
            Some(&daemon),
            &format!("session_events WHERE source = '{source}' AND event = 'socket_error'"),
            |n| n > 0,
        )
        .await;
    }
    let reason = |source: &str| {
        let store = &store;
        let sql = format!(
            "SELECT reason FROM session_events WHERE source = '{source}' AND event = 'socket_error' ORDER BY id LIMIT 1"
        );
        async move { fetch_cells(store, &sql).await[0][0].text() }
    };
    let untrusted = reason("untrusted").await;
    assert!(
        untrusted.contains("certificate") && untrusted.contains("UnknownIssuer"),
        "refusal reason is not clear: {untrusted}"
    );
    let mismatch = reason("mismatch").await;
    assert!(
        mismatch.contains("certificate not valid for name"),
        "host name mismatch reason is not clear: {mismatch}"
    );
    assert_eq!(
        count(
            &store,
            "notifications WHERE source IN ('untrusted', 'mismatch')"
        )
        .await,
        0,
        "a refused server's events were recorded"
    );
    daemon.stop().await;
}
