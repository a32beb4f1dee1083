//! A scripted data plane for the control plane tests: `upgrade::dial` + `Channel` + `Peer`,
//! every step called by the test. Part of `tests/support`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dpspec::channel::{Channel, ChannelConfig, Ended, Reader, Role};
use dpspec::cp::CpEvent;
use dpspec::http::NodeIdentity;
use dpspec::services::config::{
    PingCPRequest, PluginVersion, ReportMetadataRequest, ReportMetadataResponse, SyncConfigResponse,
};
use dpspec::services::negotiation::{
    dp_request, NegotiateServicesRequest, NegotiateServicesResponse,
};
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata, SyncConfig};
use dpspec::tls::{ClientTls, Identity, TrustMode};

use dpspec::upgrade::{dial, DialOptions, UpgradeTarget};
use dpspec::wrpc::{Peer, PeerConfig, Services, WorkerPool, WrpcError};

use crate::support::certs::{kong_shared, Pem};

/// How long a test waits for anything before failing (never reached when all is well).
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Kong's shared mode: the CP's identity and a DP client holding the same certificate.
pub struct Shared {
    pub pem: Pem,
}

impl Shared {
    pub fn new() -> Shared {
        Shared { pem: kong_shared() }
    }

    pub fn identity(&self) -> Identity {
        Identity::from_pem(self.pem.cert.as_bytes(), self.pem.key.as_bytes()).unwrap()
    }

    pub fn client(&self) -> ClientTls {
        ClientTls::new(
            TrustMode::pinned_pem(self.pem.cert.as_bytes()).unwrap(),
            Some(self.identity()),
        )
        .unwrap()
    }
}

/// One SyncConfig as the DP received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub version: u64,
    pub hash: String,
    pub gzipped_len: usize,
}

/// A connected scripted DP.
pub struct Dp {
    pub node: NodeIdentity,
    pub peer: Peer,
    /// Every SyncConfig received, in order.
    pub configs: Receiver<Received>,
    /// The versions received, in order (for ordering checks).
    pub seen: Arc<Mutex<Vec<u64>>>,
}

pub fn pool() -> Arc<WorkerPool> {
    Arc::new(WorkerPool::new("test-dp", 4, 4096).unwrap())
}

pub fn dial_raw(
    addr: SocketAddr,
    tls: &ClientTls,
    node: &NodeIdentity,
) -> Result<(Channel, Reader), dpspec::Error> {
    dial_raw_with(addr, tls, node, ChannelConfig::default())
}

/// [`dial_raw`] with channel settings of the test's (the label is set here).
pub fn dial_raw_with(
    addr: SocketAddr,
    tls: &ClientTls,
    node: &NodeIdentity,
    cfg: ChannelConfig,
) -> Result<(Channel, Reader), dpspec::Error> {
    let opts = DialOptions::new("127.0.0.1", addr.port(), tls.clone(), node.clone());
    let d = dial(&opts, &UpgradeTarget::wrpc())?;
    let cfg = cfg.label(format!("test-dp {}", node.node_id));
    Ok(Channel::new(
        d.session,
        d.sock,
        d.leftover,
        Role::Client,
        cfg,
    )?)
}

impl Dp {
    /// Dials the CP as `node_id` with Kong version `version`; answers every SyncConfig
    /// `accepted`.
    pub fn connect(
        addr: SocketAddr,
        tls: &ClientTls,
        node_id: &str,
        version: &str,
        pool: &Arc<WorkerPool>,
    ) -> Result<Dp, dpspec::Error> {
        Dp::connect_with(addr, tls, node_id, version, pool, ChannelConfig::default())
    }

    /// [`Dp::connect`] with channel settings of the test's (a larger max message size).
    pub fn connect_with(
        addr: SocketAddr,
        tls: &ClientTls,
        node_id: &str,
        version: &str,
        pool: &Arc<WorkerPool>,
        cfg: ChannelConfig,
    ) -> Result<Dp, dpspec::Error> {
        let node = NodeIdentity::new(node_id, format!("host-{node_id}"), version);
        let (channel, reader) = dial_raw_with(addr, tls, &node, cfg)?;
        let (tx, rx): (Sender<Received>, _) = crossbeam_channel::unbounded();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let services = Services::new();
        let seen2 = seen.clone();
        services.handle::<SyncConfig, _>(move |_, req| {
            seen2.lock().unwrap().push(req.version);
            let _ = tx.send(Received {
                version: req.version,
                hash: req.config_hash.clone(),
                gzipped_len: req.config.len(),
            });
            Ok(SyncConfigResponse {
                accepted: true,
                errors: vec![],
            })
        });
        let peer = Peer::new(channel, services, pool.clone(), PeerConfig::default());
        peer.spawn(reader)?;
        Ok(Dp {
            node,
            peer,
            configs: rx,
            seen,
        })
    }

    pub fn negotiate_with(
        &self,
        req: &NegotiateServicesRequest,
    ) -> Result<NegotiateServicesResponse, WrpcError> {
        self.peer.call::<NegotiateServices>(req)
    }

    pub fn negotiate(&self) -> NegotiateServicesResponse {
        let req = dp_request(&self.node.version, &self.node.hostname);
        let resp = self.negotiate_with(&req).unwrap();
        assert_eq!(resp.error_message, "", "negotiation refused");
        resp
    }

    pub fn report(&self, plugins: &[(&str, &str)]) -> Result<ReportMetadataResponse, WrpcError> {
        let plugins = plugins
            .iter()
            .map(|(n, v)| PluginVersion {
                name: n.to_string(),
                version: v.to_string(),
            })
            .collect();
        self.peer
            .call::<ReportMetadata>(&ReportMetadataRequest { plugins })
    }

    pub fn ping(&self, hash: &str) -> Result<(), WrpcError> {
        self.peer
            .call::<PingCP>(&PingCPRequest { hash: hash.into() })
            .map(|_| ())
    }

    /// Connects, negotiates and reports no plugins.
    pub fn ready(addr: SocketAddr, tls: &ClientTls, node_id: &str, pool: &Arc<WorkerPool>) -> Dp {
        let dp = Dp::connect(addr, tls, node_id, "3.1.0", pool).unwrap();
        dp.negotiate();
        dp.report(&[]).unwrap();
        dp
    }

    /// Waits for the next SyncConfig.
    pub fn next_config(&self) -> Received {
        self.configs
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{}: no SyncConfig came", self.node.node_id))
    }

    /// Waits until a SyncConfig of `version` came; returns it.
    pub fn wait_version(&self, version: u64) -> Received {
        loop {
            let r = self.next_config();
            if r.version >= version {
                return r;
            }
        }
    }

    pub fn wait_end(&self) -> Ended {
        assert!(
            self.peer.channel().wait_timeout(PATIENCE),
            "{}: the connection did not end",
            self.node.node_id
        );
        self.peer.ended().unwrap()
    }
}

/// Waits for the first event that `pick` maps to `Some`, skipping the others.
pub fn wait_event<T>(rx: &Receiver<CpEvent>, pick: impl FnMut(&CpEvent) -> Option<T>) -> T {
    wait_event_within(rx, PATIENCE, pick)
}

/// [`wait_event`] with a patience of its own (a liveness bound: reached only when the
/// event never comes).
pub fn wait_event_within<T>(
    rx: &Receiver<CpEvent>,
    patience: Duration,
    mut pick: impl FnMut(&CpEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + patience;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(ev) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            Err(_) => panic!("the awaited event did not come in {patience:?}"),
        }
    }
}
