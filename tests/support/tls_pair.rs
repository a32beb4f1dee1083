//! A CP listener on 127.0.0.1:0 with real TLS, and raw TLS clients, for the HTTP and
//! upgrade tests. Part of `tests/support`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dpspec::http::{
    read_response_head, HttpLimits, Listener, NodeIdentity, ResponseHead, ServerConfig,
};
use dpspec::tls::{ClientAuth, ClientTls, Identity, ServerTls, TrustMode};
use dpspec::upgrade::{
    self, DialOptions, Endpoint, Rejection, UpgradeHandler, UpgradeRequest, Upgraded, WRPC_PATH,
};
use rustls::StreamOwned;

use crate::support::certs::Ca;

/// The CP's node id in these tests.
pub const CP_ID: &str = "cp-node-1";

/// How long a test waits for anything before failing (never reached when all is well).
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A server configuration for `localhost` and `127.0.0.1` signed by a fresh CA, no client
/// certificates, and a client that trusts that CA.
pub fn pki() -> (ServerTls, ClientTls) {
    let ca = Ca::new("http test ca");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let server = ServerTls::new(
        Identity::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap(),
        ClientAuth::None,
    )
    .unwrap();
    let client = ClientTls::new(TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap(), None).unwrap();
    (server, client)
}

/// Kong's shared mode: both sides hold the same `kong_clustering` certificate.
pub fn shared() -> (ServerTls, ClientTls) {
    let pem = crate::support::certs::kong_shared();
    let id = || Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap();
    let server = ServerTls::new(id(), ClientAuth::Shared(None)).unwrap();
    let client = ClientTls::new(
        TrustMode::pinned_pem(pem.cert.as_bytes()).unwrap(),
        Some(id()),
    )
    .unwrap();
    (server, client)
}

/// An upgrade handler that admits (or refuses with `reject`) and sends every upgraded
/// connection, and every admitted request, to the test.
pub struct Capture {
    pub reject: Option<Rejection>,
    pub admitted: Sender<UpgradeRequest>,
    pub upgraded: Sender<Upgraded>,
}

impl UpgradeHandler for Capture {
    fn admit(&self, req: &UpgradeRequest) -> Result<(), Rejection> {
        let _ = self.admitted.send(req.clone());
        match &self.reject {
            Some(r) => Err(r.clone()),
            None => Ok(()),
        }
    }

    fn upgraded(&self, conn: Upgraded) {
        let _ = self.upgraded.send(conn);
    }
}

/// A running CP listener and what its handler saw.
pub struct Cp {
    pub listener: Listener,
    pub admitted: Receiver<UpgradeRequest>,
    pub upgraded: Receiver<Upgraded>,
    pub client_tls: ClientTls,
}

impl Cp {
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Dial options for this CP as DP `dp_node()`.
    pub fn dial_opts(&self) -> DialOptions {
        DialOptions::new(
            "127.0.0.1",
            self.addr().port(),
            self.client_tls.clone(),
            dp_node(),
        )
    }

    /// A TLS connection to the CP with nothing sent yet.
    pub fn raw_connect(&self) -> StreamOwned<rustls::ClientConnection, TcpStream> {
        let sock = TcpStream::connect(self.addr()).unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        sock.set_write_timeout(Some(PATIENCE)).unwrap();
        let conn = self.client_tls.session("localhost").unwrap();
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        stream
    }

    /// Sends `bytes` in one write on a fresh TLS connection and reads the whole answer:
    /// the head and everything up to the end of the connection.
    pub fn raw(&self, bytes: &[u8]) -> (ResponseHead, Vec<u8>) {
        let mut stream = self.raw_connect();
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
        read_to_close(&mut stream)
    }
}

/// Reads a response head, then everything up to the end of the connection.
pub fn read_to_close(stream: &mut impl Read) -> (ResponseHead, Vec<u8>) {
    let (head, mut rest) = read_response_head(stream, &HttpLimits::default()).unwrap();
    stream.read_to_end(&mut rest).unwrap();
    (head, rest)
}

/// The DP identity used by the tests.
pub fn dp_node() -> NodeIdentity {
    NodeIdentity::new("8f4e2a10-0000-4000-8000-00000000dp01", "dp-host-1", "3.1.0")
}

/// Starts a CP with `config` on 127.0.0.1:0 with [`pki`] TLS.
pub fn start(config: ServerConfig, reject: Option<Rejection>) -> Cp {
    start_with(pki(), config, reject)
}

/// Starts a CP with `config` and the given TLS pair; the capturing handler takes the wRPC
/// upgrade at `/v1/wrpc`.
pub fn start_with(
    (server_tls, client_tls): (ServerTls, ClientTls),
    config: ServerConfig,
    reject: Option<Rejection>,
) -> Cp {
    let (admitted_tx, admitted) = crossbeam_channel::unbounded();
    let (upgraded_tx, upgraded) = crossbeam_channel::unbounded();
    let handler = Arc::new(Capture {
        reject,
        admitted: admitted_tx,
        upgraded: upgraded_tx,
    });
    let config = config.route(WRPC_PATH, upgrade::route(Endpoint::wrpc(), handler));
    let listener = Listener::bind("127.0.0.1:0", server_tls, config).unwrap();
    Cp {
        listener,
        admitted,
        upgraded,
        client_tls,
    }
}

/// Starts a CP with the default configuration and node id [`CP_ID`].
pub fn start_default() -> Cp {
    start(ServerConfig::new(CP_ID), None)
}
