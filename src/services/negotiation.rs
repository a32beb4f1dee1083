//! The negotiation service (service id 5): the first call on every connection, in which
//! the data plane names the services and versions it speaks and the control plane picks.
//!
//! Besides the messages, this module holds both sides' decisions as pure functions:
//! [`NegotiationPolicy::negotiate`] for the control plane and [`check_response`] for the
//! data plane.

use std::fmt;

use super::gate::{kong_version_gate, SyncStatus};

/// The negotiation service's wRPC service id.
pub const SERVICE_ID: u32 = 5;
/// NegotiateServices, the service's only RPC.
pub const RPC_NEGOTIATE_SERVICES: u32 = 1;

/// The node type every Kong data plane sends, and the only one a Kong CP accepts.
pub const NODE_TYPE_KONG: &str = "KONG";
/// The name of the config service in negotiation.
pub const CONFIG_SERVICE_NAME: &str = "config";
/// The only version of the config service.
pub const CONFIG_SERVICE_VERSION: &str = "v1";

/// Rejection message for a service the control plane does not offer (Kong's text).
pub const REJECT_UNKNOWN_SERVICE: &str = "unknown service";
/// Rejection message when no requested version is offered (Kong's text).
pub const REJECT_NO_VALID_VERSION: &str = "no valid version";

/// NegotiateServices request, sent by the data plane.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NegotiateServicesRequest {
    /// The data plane node.
    #[prost(message, optional, tag = "1")]
    pub node: Option<DPNodeDescription>,
    /// The services wanted, each with the versions the data plane speaks.
    #[prost(message, repeated, tag = "2")]
    pub services_requested: Vec<ServiceRequest>,
}

/// Describes a data plane node (field numbers start at 2, as in Kong's definition).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct DPNodeDescription {
    /// The node type: `KONG` for Kong gateways.
    #[prost(string, tag = "2")]
    pub r#type: String,
    /// The node's Kong version, e.g. `3.1.1`.
    #[prost(string, tag = "3")]
    pub version: String,
    /// The node's host name; informational.
    #[prost(string, tag = "4")]
    pub hostname: String,
}

/// One service a data plane asks for.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceRequest {
    /// The service's name, e.g. `config`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The versions the data plane speaks, at least one.
    #[prost(string, repeated, tag = "2")]
    pub versions: Vec<String>,
}

/// NegotiateServices response. On failure only `error_message` is set; it is an ordinary
/// response, not a wRPC error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NegotiateServicesResponse {
    /// Why the request was refused; empty on success.
    #[prost(string, tag = "1")]
    pub error_message: String,
    /// The control plane node.
    #[prost(message, optional, tag = "2")]
    pub node: Option<CPNodeDescription>,
    /// The services accepted, each with the chosen version.
    #[prost(message, repeated, tag = "3")]
    pub services_accepted: Vec<AcceptedService>,
    /// The services refused, each with the reason.
    #[prost(message, repeated, tag = "4")]
    pub services_rejected: Vec<RejectedService>,
}

/// Describes a control plane node.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct CPNodeDescription {
    /// The control plane's node id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// A service the control plane accepted.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct AcceptedService {
    /// The service's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The version chosen.
    #[prost(string, tag = "2")]
    pub version: String,
    /// An optional note (deprecation, upgrade hint).
    #[prost(string, tag = "3")]
    pub message: String,
}

/// A service the control plane refused.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct RejectedService {
    /// The service's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Why (tag 3, as in Kong's definition).
    #[prost(string, tag = "3")]
    pub message: String,
}

/// The data plane's standard request: Kong node type, its version and host name, and the
/// config service in version v1, as a Kong data plane sends it.
pub fn dp_request(version: &str, hostname: &str) -> NegotiateServicesRequest {
    NegotiateServicesRequest {
        node: Some(DPNodeDescription {
            r#type: NODE_TYPE_KONG.into(),
            version: version.into(),
            hostname: hostname.into(),
        }),
        services_requested: vec![ServiceRequest {
            name: CONFIG_SERVICE_NAME.into(),
            versions: vec![CONFIG_SERVICE_VERSION.into()],
        }],
    }
}

/// A service a control plane offers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OfferedService {
    /// The service's name, as the control plane spells it.
    pub name: String,
    /// Its versions, most preferred first, as the control plane spells them.
    pub versions: Vec<String>,
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

/// The data plane's check of a NegotiateServices response, as a Kong data plane does it:
/// a set `error_message`, or a config service that is not accepted in version v1, is a
/// failure (Kong reconnects). Returns the accepted services.
pub fn check_response(resp: &NegotiateServicesResponse) -> Result<Vec<AcceptedService>, String> {
    if !resp.error_message.is_empty() {
        return Err(format!(
            "the control plane refused the negotiation: {}",
            resp.error_message
        ));
    }
    let is_config = |name: &str| name.eq_ignore_ascii_case(CONFIG_SERVICE_NAME);
    match resp.services_accepted.iter().find(|s| is_config(&s.name)) {
        Some(s) if s.version.eq_ignore_ascii_case(CONFIG_SERVICE_VERSION) => {
            Ok(resp.services_accepted.clone())
        }
        Some(s) => Err(format!(
            "the control plane accepted the config service in version {:?}, \
             but only {CONFIG_SERVICE_VERSION} is spoken here",
            s.version
        )),
        None => match resp.services_rejected.iter().find(|s| is_config(&s.name)) {
            Some(r) => Err(format!(
                "the control plane rejected the config service: {}",
                r.message
            )),
            None => Err("the control plane did not accept the config service".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NegotiationPolicy {
        NegotiationPolicy {
            cp_node_id: "cp-1".into(),
            ..Default::default()
        }
    }

    fn request(services: &[(&str, &[&str])]) -> NegotiateServicesRequest {
        let mut req = dp_request("3.1.0", "dp.local");
        req.services_requested = services
            .iter()
            .map(|(name, versions)| ServiceRequest {
                name: (*name).into(),
                versions: versions.iter().map(|v| (*v).into()).collect(),
            })
            .collect();
        req
    }

    fn accepted(name: &str, version: &str) -> AcceptedService {
        AcceptedService {
            name: name.into(),
            version: version.into(),
            message: String::new(),
        }
    }

    fn rejected(name: &str, message: &str) -> RejectedService {
        RejectedService {
            name: name.into(),
            message: message.into(),
        }
    }

    #[test]
    fn kong_dp_request_is_accepted() {
        let resp = policy().negotiate(&dp_request("3.1.1", "dp")).unwrap();
        assert_eq!(
            resp,
            NegotiateServicesResponse {
                error_message: String::new(),
                node: Some(CPNodeDescription { id: "cp-1".into() }),
                services_accepted: vec![accepted("config", "v1")],
                services_rejected: vec![],
            }
        );
        assert_eq!(check_response(&resp), Ok(vec![accepted("config", "v1")]));
    }

    #[test]
    fn unknown_service_is_rejected_and_others_accepted() {
        let resp = policy()
            .negotiate(&request(&[("vitals", &["v1"]), ("config", &["v1"])]))
            .unwrap();
        assert_eq!(resp.services_accepted, vec![accepted("config", "v1")]);
        assert_eq!(
            resp.services_rejected,
            vec![rejected("vitals", "unknown service")]
        );
    }

    #[test]
    fn no_common_version_is_rejected() {
        let resp = policy()
            .negotiate(&request(&[("config", &["v2", "v3"])]))
            .unwrap();
        assert!(resp.services_accepted.is_empty());
        assert_eq!(
            resp.services_rejected,
            vec![rejected("config", "no valid version")]
        );
        assert_eq!(
            check_response(&resp),
            Err("the control plane rejected the config service: no valid version".into())
        );
    }

    #[test]
    fn wrong_node_type_fails_with_only_error_message() {
        let mut req = dp_request("3.1.1", "dp");
        req.node.as_mut().unwrap().r#type = "kong".into();
        let fail = policy().negotiate(&req).unwrap_err();
        assert_eq!(fail.status, SyncStatus::Unknown);
        let resp = fail.to_response();
        assert_eq!(
            resp,
            NegotiateServicesResponse {
                error_message: "unknown node type \"kong\": only \"KONG\" is accepted".into(),
                ..Default::default()
            }
        );
        assert!(check_response(&resp)
            .unwrap_err()
            .starts_with("the control plane refused the negotiation: unknown node type"));
    }

    #[test]
    fn newer_dp_minor_fails_the_gate() {
        let fail = policy().negotiate(&dp_request("3.2.0", "dp")).unwrap_err();
        assert_eq!(fail.status, SyncStatus::KongVersionIncompatible);
        assert!(fail.message.contains("3.2.0"), "{}", fail.message);
    }

    #[test]
    fn different_major_fails_the_gate_unless_gate_is_off() {
        let fail = policy().negotiate(&dp_request("2.8.1", "dp")).unwrap_err();
        assert_eq!(fail.status, SyncStatus::KongVersionIncompatible);
        let open = NegotiationPolicy {
            version_gate: false,
            ..policy()
        };
        assert!(open.negotiate(&dp_request("2.8.1", "dp")).is_ok());
    }

    #[test]
    fn enterprise_versions_pass_the_gate() {
        assert!(policy()
            .negotiate(&dp_request("3.0.0.0-enterprise", "dp"))
            .is_ok());
        assert!(policy().negotiate(&dp_request("3.1.1.3", "dp")).is_ok());
    }

    #[test]
    fn names_and_versions_compare_case_insensitively_and_answer_in_cp_spelling() {
        let resp = policy()
            .negotiate(&request(&[("CONFIG", &["V1"])]))
            .unwrap();
        assert_eq!(resp.services_accepted, vec![accepted("config", "v1")]);
    }

    #[test]
    fn cp_preference_order_wins_over_dp_order() {
        let p = NegotiationPolicy {
            offered: vec![OfferedService {
                name: "config".into(),
                versions: vec!["v2".into(), "v1".into()],
            }],
            ..policy()
        };
        let resp = p.negotiate(&request(&[("config", &["v1", "v2"])])).unwrap();
        assert_eq!(resp.services_accepted, vec![accepted("config", "v2")]);
        let resp = p.negotiate(&request(&[("config", &["v1", "v3"])])).unwrap();
        assert_eq!(resp.services_accepted, vec![accepted("config", "v1")]);
    }

    #[test]
    fn malformed_requests_fail() {
        let p = policy();
        let mut no_node = dp_request("3.1.1", "dp");
        no_node.node = None;
        assert_eq!(
            p.negotiate(&no_node).unwrap_err().message,
            "the request has no node description"
        );
        assert_eq!(
            p.negotiate(&request(&[])).unwrap_err().message,
            "no services requested"
        );
        assert_eq!(
            p.negotiate(&request(&[("config", &[])]))
                .unwrap_err()
                .message,
            "service \"config\" lists no versions"
        );
    }

    #[test]
    fn dp_check_requires_config_v1() {
        let mut resp = policy().negotiate(&dp_request("3.1.1", "dp")).unwrap();
        resp.services_accepted[0].version = "v2".into();
        assert!(check_response(&resp).unwrap_err().contains("\"v2\""));
        resp.services_accepted.clear();
        assert_eq!(
            check_response(&resp),
            Err("the control plane did not accept the config service".into())
        );
    }

    #[test]
    fn request_encodes_node_fields_from_tag_2() {
        use prost::Message;
        let node = DPNodeDescription {
            r#type: "KONG".into(),
            version: String::new(),
            hostname: String::new(),
        };
        assert_eq!(node.encode_to_vec(), b"\x12\x04KONG");
    }
}
