//! The negotiation service (service id 5): the first call on every connection, in which
//! the data plane names the services and versions it speaks and the control plane picks.
//!
//! Besides the messages, this module holds both sides' decisions as pure functions:
//! [`NegotiationPolicy::negotiate`] for the control plane (feature `cp`) and
//! [`check_response`] for the data plane (feature `dp`).

#[cfg(feature = "cp")]
mod policy;

#[cfg(feature = "cp")]
#[cfg_attr(docsrs, doc(cfg(feature = "cp")))]
pub use policy::{NegotiationFailure, NegotiationPolicy, OfferedService};

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

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
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

#[cfg(feature = "dp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dp")))]
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

#[cfg(all(test, feature = "dp", feature = "cp"))]
mod tests {
    use super::*;
    use crate::services::gate::SyncStatus;

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
