//! The control plane's side of the negotiation: which services it offers and how it
//! answers a request, the way Kong's does.

use std::fmt;

use super::*;
use crate::services::gate::{kong_version_gate, SyncStatus};

/// A service a control plane offers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OfferedService {
    /// The service's name, as the control plane spells it.
    pub name: String,
    /// Its versions, most preferred first, as the control plane spells them.
    pub versions: Vec<String>,
}

impl OfferedService {
    /// The service `name` in `versions`, most preferred first.
    pub fn new<I, V>(name: impl Into<String>, versions: I) -> OfferedService
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        OfferedService {
            name: name.into(),
            versions: versions.into_iter().map(Into::into).collect(),
        }
    }
}

/// How a control plane answers NegotiateServices, the way Kong's does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiationPolicy {
    /// The control plane's node id, sent back in the response. Default: empty (set it).
    pub cp_node_id: String,
    /// The services offered. Default: `config` in `v1`, what Kong offers.
    pub offered: Vec<OfferedService>,
    /// The control plane's Kong version, for the version gate. Default: `3.1.1`, the last
    /// Kong release that spoke wRPC.
    pub kong_version: String,
    /// Whether to apply Kong's version gate (same major, data plane minor not newer).
    /// Default: on, as in Kong.
    pub version_gate: bool,
}

impl Default for NegotiationPolicy {
    fn default() -> Self {
        NegotiationPolicy {
            cp_node_id: String::new(),
            offered: vec![OfferedService {
                name: CONFIG_SERVICE_NAME.into(),
                versions: vec![CONFIG_SERVICE_VERSION.into()],
            }],
            kong_version: "3.1.1".into(),
            version_gate: true,
        }
    }
}

/// Why a control plane refused a negotiation as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiationFailure {
    /// The data plane's sync status after this failure (Kong records
    /// [`SyncStatus::KongVersionIncompatible`] for the version gate, and
    /// [`SyncStatus::Unknown`] otherwise).
    pub status: SyncStatus,
    /// The text for the response's `error_message`.
    pub message: String,
}

impl NegotiationFailure {
    fn new(status: SyncStatus, message: impl Into<String>) -> Self {
        NegotiationFailure {
            status,
            message: message.into(),
        }
    }

    /// The response to send: only `error_message` set.
    pub fn to_response(&self) -> NegotiateServicesResponse {
        NegotiateServicesResponse {
            error_message: self.message.clone(),
            ..Default::default()
        }
    }
}

impl fmt::Display for NegotiationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "negotiation refused ({}): {}", self.status, self.message)
    }
}

impl std::error::Error for NegotiationFailure {}

impl NegotiationPolicy {
    /// Answers a NegotiateServices request.
    ///
    /// Refuses the whole request (see [`NegotiationFailure::to_response`]) when the node
    /// is missing, its type is not exactly `KONG`, the version gate fails (when on), no
    /// service is requested, or a requested service lists no version.
    ///
    /// Otherwise each requested service is accepted with the first version of the
    /// control plane's preference list that the data plane offers (names and versions
    /// compared case-insensitively; the answer uses the control plane's spelling), or
    /// rejected with `unknown service` or `no valid version`. The response names this
    /// control plane's node id.
    pub fn negotiate(
        &self,
        req: &NegotiateServicesRequest,
    ) -> Result<NegotiateServicesResponse, NegotiationFailure> {
        let Some(node) = &req.node else {
            return Err(NegotiationFailure::new(
                SyncStatus::Unknown,
                "the request has no node description",
            ));
        };
        if node.r#type != NODE_TYPE_KONG {
            return Err(NegotiationFailure::new(
                SyncStatus::Unknown,
                format!(
                    "unknown node type {:?}: only {NODE_TYPE_KONG:?} is accepted",
                    node.r#type
                ),
            ));
        }
        if self.version_gate {
            kong_version_gate(&self.kong_version, &node.version)
                .map_err(|m| NegotiationFailure::new(SyncStatus::KongVersionIncompatible, m))?;
        }
        if req.services_requested.is_empty() {
            return Err(NegotiationFailure::new(
                SyncStatus::Unknown,
                "no services requested",
            ));
        }
        if let Some(s) = req
            .services_requested
            .iter()
            .find(|s| s.versions.is_empty())
        {
            return Err(NegotiationFailure::new(
                SyncStatus::Unknown,
                format!("service {:?} lists no versions", s.name),
            ));
        }

        let mut resp = NegotiateServicesResponse {
            node: Some(CPNodeDescription {
                id: self.cp_node_id.clone(),
            }),
            ..Default::default()
        };
        for wanted in &req.services_requested {
            let Some(offer) = self
                .offered
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(&wanted.name))
            else {
                resp.services_rejected.push(RejectedService {
                    name: wanted.name.clone(),
                    message: REJECT_UNKNOWN_SERVICE.into(),
                });
                continue;
            };
            let chosen = offer
                .versions
                .iter()
                .find(|v| wanted.versions.iter().any(|w| w.eq_ignore_ascii_case(v)));
            match chosen {
                Some(version) => resp.services_accepted.push(AcceptedService {
                    name: offer.name.clone(),
                    version: version.clone(),
                    message: String::new(),
                }),
                None => resp.services_rejected.push(RejectedService {
                    name: offer.name.clone(),
                    message: REJECT_NO_VALID_VERSION.into(),
                }),
            }
        }
        Ok(resp)
    }
}
