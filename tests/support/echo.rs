//! A small test service: Echo (id 1) as in the wRPC examples, plus rpcs that fail, block
//! or take big payloads.

use std::sync::Arc;

use dpspec::wrpc::{HandlerError, Peer, PeerConfig, Services, WorkerPool};
use dpspec::wrpc_service;

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub s: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    #[prost(string, tag = "1")]
    pub s: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Blob {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

wrpc_service! {
    /// Test service.
    pub service EchoService = 1 {
        /// "echo-" + s.
        rpc Echo = 1 (EchoRequest) -> EchoResponse;
        /// Always fails with the request's text.
        rpc Fail = 2 (EchoRequest) -> EchoResponse;
        /// Returns the blob's length as text.
        rpc Size = 3 (Blob) -> EchoResponse;
        /// A stream of EchoRequest.
        rpc Stream = 4 (EchoRequest) -> EchoResponse;
        /// Never registered: INVALID_RPC.
        rpc Missing = 9 (EchoRequest) -> EchoResponse;
    }
}

wrpc_service! {
    /// Never registered: INVALID_SERVICE.
    pub service Nowhere = 77 {
        /// Nothing.
        rpc Nothing = 1 (EchoRequest) -> EchoResponse;
    }
}

/// Echo, Fail and Size handlers.
pub fn echo_services() -> Services {
    let s = Services::new();
    s.handle::<Echo, _>(|_, req| {
        Ok(EchoResponse {
            s: format!("echo-{}", req.s),
        })
    });
    s.handle::<Fail, _>(|_, req| Err(HandlerError::new(format!("failed: {}", req.s))));
    s.handle::<Size, _>(|_, req| {
        Ok(EchoResponse {
            s: req.data.len().to_string(),
        })
    });
    s
}

pub fn pool() -> Arc<WorkerPool> {
    Arc::new(WorkerPool::new("test", 4, 1024).unwrap())
}

/// Two peers over one TLS connection, both readers running.
pub fn peer_pair(client: Services, server: Services) -> (Peer, Peer) {
    peer_pair_with(
        client,
        server,
        pool(),
        dpspec::channel::ChannelConfig::default(),
    )
}

pub fn peer_pair_with(
    client: Services,
    server: Services,
    pool: Arc<WorkerPool>,
    cfg: dpspec::channel::ChannelConfig,
) -> (Peer, Peer) {
    let ((cc, cr), (sc, sr)) = super::pair::channel_pair(cfg.clone(), cfg);
    let c = Peer::new(cc, client, pool.clone(), PeerConfig::default());
    let s = Peer::new(sc, server, pool, PeerConfig::default());
    c.spawn(cr).unwrap();
    s.spawn(sr).unwrap();
    (c, s)
}
