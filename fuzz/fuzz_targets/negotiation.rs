//! The negotiation service: the CP's policy on a decoded NegotiateServices request, and
//! the DP's check of a decoded response, on the same bytes.
//!
//! Checks: no panic; decoded messages re-encode to the same message; every answer the
//! policy gives survives the wire; when the policy accepts the config service in v1, the
//! DP's check accepts the answer, and a refusal is a refusal to the DP too.
#![no_main]

use dpspec::services::negotiation::{
    check_response, NegotiateServicesRequest, NegotiateServicesResponse, NegotiationPolicy,
    OfferedService,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn policies() -> [NegotiationPolicy; 3] {
    let kong = NegotiationPolicy {
        cp_node_id: "cp-1".into(),
        ..NegotiationPolicy::default()
    };
    let open = NegotiationPolicy {
        version_gate: false,
        ..kong.clone()
    };
    let many = NegotiationPolicy {
        offered: vec![
            OfferedService::new("config", ["v2", "v1"]),
            OfferedService::new("Extra", ["V1"]),
        ],
        kong_version: "3.9.0".into(),
        ..kong.clone()
    };
    [kong, open, many]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = NegotiateServicesRequest::decode(data) {
        let again = NegotiateServicesRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, req);
        for policy in policies() {
            let resp = match policy.negotiate(&req) {
                Ok(resp) => resp,
                Err(failure) => {
                    let _ = failure.to_string();
                    let resp = failure.to_response();
                    assert!(check_response(&resp).is_err(), "a refusal must fail the DP");
                    resp
                }
            };
            let wire = NegotiateServicesResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
            assert_eq!(wire, resp);
            let config_v1 = resp.error_message.is_empty()
                && resp
                    .services_accepted
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case("config"))
                    .is_some_and(|s| s.version.eq_ignore_ascii_case("v1"));
            assert_eq!(check_response(&wire).is_ok(), config_v1, "{wire:?}");
        }
    }
    if let Ok(resp) = NegotiateServicesResponse::decode(data) {
        let again = NegotiateServicesResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, resp);
        if let Ok(accepted) = check_response(&resp) {
            assert!(resp.error_message.is_empty());
            assert_eq!(accepted, resp.services_accepted);
        }
    }
});
