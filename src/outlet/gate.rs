//! The control plane's version and size rules for `/v1/outlet` data planes.
//!
//! The plugin gate is the same as for wRPC: pass [`super::BasicInfo::plugins`] to
//! [`crate::services::gate::plugin_gate`] before each push, and skip the push (keeping the
//! connection) when it fails.

use super::{DEFAULT_MAX_FRAME, LEGACY_MAX_FRAME};
use crate::services::gate::{kong_version_gate, major_minor, SyncStatus};

/// The Kong version a JSON control plane gates with when none is configured: `3.9.3`.
///
/// The gate accepts data planes of the same major version and a minor version not above
/// the control plane's, so `3.9.3` accepts every Kong 3.x data plane up to 3.9, which
/// covers every released 3.x (3.9.3 is Kong's newest tag; 3.10 exists only as master).
/// A `/v1/outlet` control plane never tells its version to the data plane: the value
/// only feeds [`json_version_gate`]. Set `2.8.x` to serve Kong 2.x data planes instead.
pub const DEFAULT_JSON_CP_VERSION: &str = "3.9.3";

/// The Kong version gate of `/v1/outlet`, run right after `basic_info`: the data plane
/// (`dp`, its `node_version`) must have the control plane's (`cp`) major version and a
/// minor version not above it; patch levels and a fourth (Enterprise) part are ignored.
///
/// On failure the status is [`SyncStatus::KongVersionIncompatible`] with the reason, and
/// the control plane closes the connection, as Kong does (the data plane retries every
/// 5 to 10 s).
///
/// This is the rule of Kong 2.5 and later. Kong 2.3 and 2.4 control planes also refused
/// data planes more than two minors older (CP minor − 2 ≤ DP minor ≤ CP minor); that
/// window was the control plane's own policy, dropped in 2.5, and no data plane relies
/// on it, so we do not implement it. Kong requires `MAJOR.MINOR.PATCH`; we, like the
/// wRPC gate, accept a bare `MAJOR.MINOR`.
pub fn json_version_gate(cp: &str, dp: &str) -> Result<(), (SyncStatus, String)> {
    kong_version_gate(cp, dp).map_err(|why| (SyncStatus::KongVersionIncompatible, why))
}

/// The largest frame a Kong data plane of version `dp_version` accepts by default, which
/// bounds the gzipped `reconfigure` a control plane may send it: [`DEFAULT_MAX_FRAME`]
/// (16 MiB) from Kong 3.4, [`LEGACY_MAX_FRAME`] (4 MiB) below.
///
/// A version that cannot be parsed gets the conservative 4 MiB. Kong's data planes can
/// raise their limit (`cluster_max_payload`, 2.8+) but do not announce it, so a control
/// plane that knows better should let the operator override this. (Kong 2.0's 64 KiB does
/// not matter: 2.0 to 2.2 data planes send no `basic_info` and cannot be served.)
pub fn max_frame_for(dp_version: &str) -> usize {
    match major_minor(dp_version) {
        Some((major, minor)) if major > 3 || (major == 3 && minor >= 4) => DEFAULT_MAX_FRAME,
        _ => LEGACY_MAX_FRAME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cp_version_accepts_every_3x_up_to_3_9() {
        for minor in 0..=9 {
            let dp = format!("3.{minor}.0");
            assert_eq!(
                json_version_gate(DEFAULT_JSON_CP_VERSION, &dp),
                Ok(()),
                "{dp}"
            );
        }
        assert_eq!(
            json_version_gate(DEFAULT_JSON_CP_VERSION, "3.4.3.2"),
            Ok(())
        );
    }

    #[test]
    fn newer_minor_or_other_major_is_kong_version_incompatible() {
        for dp in ["3.10.0", "2.8.5", "4.0.0", "", "latest"] {
            let (status, why) = json_version_gate(DEFAULT_JSON_CP_VERSION, dp).unwrap_err();
            assert_eq!(status, SyncStatus::KongVersionIncompatible, "{dp}");
            assert_eq!(status.as_str(), "kong_version_incompatible");
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn a_2_8_cp_serves_older_2x_dps_beyond_the_2_3_window() {
        // Kong 2.3/2.4 would refuse a DP three minors older; 2.5+ and we accept it.
        assert_eq!(json_version_gate("2.8.5", "2.3.3"), Ok(()));
        assert!(json_version_gate("2.8.5", "3.0.0").is_err());
    }

    #[test]
    fn frames_grow_to_16_mib_from_3_4() {
        assert_eq!(max_frame_for("3.4.0"), 16 * 1024 * 1024);
        assert_eq!(max_frame_for("3.9.3"), DEFAULT_MAX_FRAME);
        assert_eq!(max_frame_for("3.4.3.2"), DEFAULT_MAX_FRAME);
        assert_eq!(max_frame_for("4.0.0"), DEFAULT_MAX_FRAME);
        assert_eq!(max_frame_for("3.3.1"), 4 * 1024 * 1024);
        assert_eq!(max_frame_for("2.8.5"), LEGACY_MAX_FRAME);
        assert_eq!(max_frame_for("3.0.0.0-enterprise"), LEGACY_MAX_FRAME);
    }

    #[test]
    fn an_unparsable_version_gets_the_conservative_limit() {
        assert_eq!(max_frame_for(""), LEGACY_MAX_FRAME);
        assert_eq!(max_frame_for("dev"), LEGACY_MAX_FRAME);
    }
}
