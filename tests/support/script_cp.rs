//! A scripted control plane built from the transport and peer layers only, for testing
//! the data plane: each upgraded connection is handed to the test with its peer, and the
//! test decides what to push.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dpspec::channel::{Channel, ChannelConfig, Role};
use dpspec::http::{Listener, NodeIdentity, ServerConfig};
use dpspec::services::config::{
    report_metadata_response, PingCPResponse, ReportMetadataResponse, SyncConfigRequest,
    SyncConfigResponse,
};
use dpspec::services::negotiation::{
    AcceptedService, CPNodeDescription, NegotiateServicesResponse, RejectedService,
};
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata, SyncConfig};
use dpspec::tls::{ClientAuth, Identity, ServerTls, TrustMode};

use dpspec::upgrade::{self, Endpoint, UpgradeHandler, Upgraded, WRPC_PATH};
use dpspec::wrpc::{Peer, PeerConfig, Services, WorkerPool, WrpcError};

use super::certs::{kong_shared, Pem};

pub const CP_ID: &str = "0e0b5a16-4ad5-4c6b-9e1c-2a2b0c0ffee0";
pub const PATIENCE: Duration = Duration::from_secs(15);

/// What the scripted CP answers to NegotiateServices.
#[derive(Clone, Debug)]
pub enum Negotiation {
    Accept,
    ErrorMessage(String),
    RejectConfig,
}

/// One DP connection as the scripted CP sees it.
pub struct CpConn {
    pub peer: Peer,
    pub node: NodeIdentity,
    pub pings: Receiver<String>,
    pub reported: Receiver<Vec<(String, String)>>,
}

impl CpConn {
    pub fn next_ping(&self) -> String {
        self.pings.recv_timeout(PATIENCE).expect("a PingCP in time")
    }

    /// Pushes `json` (gzipped) with `version` and `hash` and returns the DP's answer.
    pub fn push(
        &self,
        version: u64,
        json: &str,
        hash: &str,
    ) -> Result<SyncConfigResponse, WrpcError> {
        self.push_bytes(version, dpspec::config::gzip(json.as_bytes()), hash)
    }

    pub fn push_bytes(
        &self,
        version: u64,
        config: Vec<u8>,
        hash: &str,
    ) -> Result<SyncConfigResponse, WrpcError> {
        let req = SyncConfigRequest {
            config: config.into(),
            version,
            config_hash: hash.into(),
            hashes: None,
        };
        self.peer.call::<SyncConfig>(&req)
    }
}

struct Script {
    negotiation: Negotiation,
    peers: Arc<std::sync::Mutex<Vec<Peer>>>,
    conns: Sender<CpConn>,
    pool: Arc<WorkerPool>,
}

impl UpgradeHandler for Script {
    fn upgraded(&self, up: Upgraded) {
        let label = format!("dp-{}", up.peer_addr);
        let cfg = ChannelConfig::default().label(label);
        let (channel, reader) =
            Channel::new(up.session, up.sock, up.leftover, Role::Server, cfg).unwrap();
        let services = Services::new();
        let negotiation = self.negotiation.clone();
        services.handle::<NegotiateServices, _>(move |_, _req| {
            Ok(match &negotiation {
                Negotiation::Accept => NegotiateServicesResponse {
                    error_message: String::new(),
                    node: Some(CPNodeDescription { id: CP_ID.into() }),
                    services_accepted: vec![AcceptedService {
                        name: "config".into(),
                        version: "v1".into(),
                        message: String::new(),
                    }],
                    services_rejected: vec![],
                },
                Negotiation::ErrorMessage(m) => NegotiateServicesResponse {
                    error_message: m.clone(),
                    ..Default::default()
                },
                Negotiation::RejectConfig => NegotiateServicesResponse {
                    error_message: String::new(),
                    node: Some(CPNodeDescription { id: CP_ID.into() }),
                    services_accepted: vec![],
                    services_rejected: vec![RejectedService {
                        name: "config".into(),
                        message: "no valid version".into(),
                    }],
                },
            })
        });
        let (ping_tx, pings) = crossbeam_channel::unbounded();
        services.handle::<PingCP, _>(move |_, req| {
            let _ = ping_tx.send(req.hash);
            Ok(PingCPResponse {})
        });
        let (report_tx, reported) = crossbeam_channel::unbounded();
        services.handle::<ReportMetadata, _>(move |_, req| {
            let _ = report_tx.send(
                req.plugins
                    .into_iter()
                    .map(|p| (p.name, p.version))
                    .collect(),
            );
            Ok(ReportMetadataResponse {
                response: Some(report_metadata_response::Response::Ok("done".into())),
            })
        });
        let peer = Peer::new(channel, services, self.pool.clone(), PeerConfig::default());
        self.peers.lock().unwrap().push(peer.clone());
        let _ = self.conns.send(CpConn {
            peer: peer.clone(),
            node: up.node,
            pings,
            reported,
        });
        peer.serve(reader);
    }
}

/// A scripted CP on 127.0.0.1 in Kong's shared mode.
pub struct ScriptCp {
    pub listener: Listener,
    peers: Arc<std::sync::Mutex<Vec<Peer>>>,
    pub addr: SocketAddr,
    pub conns: Receiver<CpConn>,
    pub cert: Pem,
}

impl ScriptCp {
    pub fn start(negotiation: Negotiation) -> ScriptCp {
        Self::start_at("127.0.0.1:0", kong_shared(), negotiation)
    }

    /// Starts on `addr` with the shared certificate `cert` (to come back on the same port).
    pub fn start_at(addr: &str, cert: Pem, negotiation: Negotiation) -> ScriptCp {
        let identity = Identity::from_pem(cert.cert.as_bytes(), cert.key.as_bytes()).unwrap();
        let tls = ServerTls::new(identity, ClientAuth::Shared(None)).unwrap();
        let (tx, conns) = crossbeam_channel::unbounded();
        let pool = Arc::new(WorkerPool::new("script-cp", 2, 64).unwrap());
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script = Arc::new(Script {
            negotiation,
            peers: peers.clone(),
            conns: tx,
            pool,
        });
        let config =
            ServerConfig::new(CP_ID).route(WRPC_PATH, upgrade::route(Endpoint::wrpc(), script));
        let listener = Listener::bind(addr, tls, config).unwrap();
        let addr = listener.local_addr();
        ScriptCp {
            listener,
            peers,
            addr,
            conns,
            cert,
        }
    }

    pub fn next_conn(&self) -> CpConn {
        self.conns
            .recv_timeout(PATIENCE)
            .expect("a DP connection in time")
    }

    /// The DP-side trust and identity for this CP's shared certificate.
    pub fn dp_trust(&self) -> (TrustMode, Identity) {
        (
            TrustMode::pinned_pem(self.cert.cert.as_bytes()).unwrap(),
            Identity::from_pem(self.cert.cert.as_bytes(), self.cert.key.as_bytes()).unwrap(),
        )
    }
}

impl Drop for ScriptCp {
    /// Stops accepting, closes every connection (the listener joins their threads).
    fn drop(&mut self) {
        self.listener.stop_accepting();
        for peer in self.peers.lock().unwrap().drain(..) {
            peer.close(1001, "scripted CP going away");
        }
    }
}
