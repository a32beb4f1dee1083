//! The config service's messages as each side decodes them: ReportMetadata (the CP runs
//! its plugin gate on it), PingCP, GetCapabilities, SyncConfig (the DP inflates, parses
//! and hashes its config) and the responses.
//!
//! Checks: no panic; every decoded message re-encodes to the same message; a config
//! never inflates past the cap.
#![no_main]

use dpspec::config::{config_hashes, decode};
use dpspec::services::config::{
    GetCapabilitiesResponse, PingCPRequest, PluginVersion, ReportMetadataRequest,
    ReportMetadataResponse, SyncConfigRequest, SyncConfigResponse,
};
use dpspec::services::gate::plugin_gate;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const CAP: usize = 256 * 1024;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let m = M::decode(data).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, m);
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    if let Some(report) = round_trip::<ReportMetadataRequest>(data) {
        let cp = [
            PluginVersion {
                name: "rate-limiting".into(),
                version: "2.4.0".into(),
            },
            PluginVersion {
                name: "key-auth".into(),
                version: String::new(),
            },
        ];
        let _ = plugin_gate(&cp, &report.plugins);
        let _ = plugin_gate(&report.plugins, &cp);
        let _ = plugin_gate(&report.plugins, &report.plugins);
    }
    let _ = round_trip::<ReportMetadataResponse>(data);
    let _ = round_trip::<PingCPRequest>(data);
    let _ = round_trip::<GetCapabilitiesResponse>(data);
    let _ = round_trip::<SyncConfigResponse>(data);
    if let Some(sync) = round_trip::<SyncConfigRequest>(data) {
        if let Ok(map) = decode(&sync.config, CAP) {
            let h = config_hashes(&map);
            assert_eq!(h.config.len(), 32);
        }
    }
});
