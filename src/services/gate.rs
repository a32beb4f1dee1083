//! The control plane's compatibility gates, as Kong applies them: the Kong version gate
//! checked when a data plane negotiates, and the plugin gate checked before each config
//! push.
//!
//! Versions are compared by their leading `MAJOR.MINOR` only, so `3.1.1`, `3.1.1.3` and
//! `3.1.0.0-enterprise` all count as 3.1.

use std::fmt;

use super::config::PluginVersion;

/// A data plane's sync status, as Kong's control plane records it (the strings are Kong's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncStatus {
    /// Compatible: configs are pushed.
    Normal,
    /// The data plane's Kong version is not accepted by the control plane.
    KongVersionIncompatible,
    /// A plugin configured on the control plane is missing on the data plane.
    PluginSetIncompatible,
    /// A plugin configured on the control plane has an incompatible version on the data
    /// plane.
    PluginVersionIncompatible,
    /// Anything else (Kong uses it, among others, for an unknown node type).
    Unknown,
}

impl SyncStatus {
    /// Kong's name for the status: `normal`, `kong_version_incompatible`,
    /// `plugin_set_incompatible`, `plugin_version_incompatible` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SyncStatus::Normal => "normal",
            SyncStatus::KongVersionIncompatible => "kong_version_incompatible",
            SyncStatus::PluginSetIncompatible => "plugin_set_incompatible",
            SyncStatus::PluginVersionIncompatible => "plugin_version_incompatible",
            SyncStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The leading `MAJOR.MINOR` of a version string (`"3.0.0.0-enterprise"` gives `(3, 0)`),
/// or `None` when it does not start with two dot-separated numbers.
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let (major, rest) = leading_number(version)?;
    let rest = rest.strip_prefix('.')?;
    let (minor, _) = leading_number(rest)?;
    Some((major, minor))
}

fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

/// Kong's version gate: a data plane is accepted when its major version equals the
/// control plane's and its minor version is not newer. `cp` and `dp` are Kong versions
/// such as `3.1.1`. The error says why, for the negotiation's `error_message`.
pub fn kong_version_gate(cp: &str, dp: &str) -> Result<(), String> {
    let Some((cp_major, cp_minor)) = major_minor(cp) else {
        return Err(format!(
            "the control plane's own version {cp:?} cannot be parsed as MAJOR.MINOR"
        ));
    };
    let Some((dp_major, dp_minor)) = major_minor(dp) else {
        return Err(format!(
            "data plane version {dp:?} cannot be parsed as MAJOR.MINOR; \
             this control plane ({cp}) accepts {cp_major}.x data planes"
        ));
    };
    if dp_major != cp_major {
        return Err(format!(
            "data plane version {dp} is incompatible with control plane version {cp}: \
             only {cp_major}.x data planes are accepted"
        ));
    }
    if dp_minor > cp_minor {
        return Err(format!(
            "data plane version {dp} is newer than control plane version {cp}: \
             upgrade the control plane first"
        ));
    }
    Ok(())
}

/// Kong's plugin gate, checked before each config push: `cp_plugins` are the plugins
/// configured on the control plane (Kong only checks those), `dp_plugins` the list the
/// data plane sent in ReportMetadata.
///
/// For each control plane plugin: missing on the data plane gives
/// [`SyncStatus::PluginSetIncompatible`]; a different major version, or a newer minor
/// version on the data plane, gives [`SyncStatus::PluginVersionIncompatible`]. The first
/// problem found is returned with its explanation, and the push should be skipped.
///
/// Like Kong, the version check is skipped when either side reports no version. A
/// version that cannot be parsed as `MAJOR.MINOR` is incompatible unless both sides
/// report exactly the same string. Names are compared exactly, as Kong does.
pub fn plugin_gate(
    cp_plugins: &[PluginVersion],
    dp_plugins: &[PluginVersion],
) -> Result<(), (SyncStatus, String)> {
    for cp in cp_plugins {
        let Some(dp) = dp_plugins.iter().find(|p| p.name == cp.name) else {
            let what = if cp.version.is_empty() {
                cp.name.clone()
            } else {
                format!("{} {}", cp.name, cp.version)
            };
            return Err((
                SyncStatus::PluginSetIncompatible,
                format!("configured plugin {what} is missing from the data plane"),
            ));
        };
        if cp.version.is_empty() || dp.version.is_empty() || cp.version == dp.version {
            continue;
        }
        let compatible = match (major_minor(&cp.version), major_minor(&dp.version)) {
            (Some((cp_major, cp_minor)), Some((dp_major, dp_minor))) => {
                cp_major == dp_major && dp_minor <= cp_minor
            }
            _ => false,
        };
        if !compatible {
            return Err((
                SyncStatus::PluginVersionIncompatible,
                format!(
                    "configured plugin {} has version {} on the data plane, \
                     incompatible with version {} on the control plane",
                    cp.name, dp.version, cp.version
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, version: &str) -> PluginVersion {
        PluginVersion {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn major_minor_reads_kong_versions() {
        assert_eq!(major_minor("3.1.1"), Some((3, 1)));
        assert_eq!(major_minor("3.0.0.0-enterprise"), Some((3, 0)));
        assert_eq!(major_minor("3.1.1.3"), Some((3, 1)));
        assert_eq!(major_minor("10.22"), Some((10, 22)));
        assert_eq!(major_minor("3"), None);
        assert_eq!(major_minor("v3.1"), None);
        assert_eq!(major_minor(""), None);
        assert_eq!(major_minor("3.x"), None);
    }

    #[test]
    fn same_or_older_minor_passes_the_version_gate() {
        assert_eq!(kong_version_gate("3.1.1", "3.1.0"), Ok(()));
        assert_eq!(kong_version_gate("3.1.1", "3.0.0.0-enterprise"), Ok(()));
        assert_eq!(kong_version_gate("3.1.1.3", "3.1.9"), Ok(()));
    }

    #[test]
    fn newer_dp_minor_fails_the_version_gate() {
        let e = kong_version_gate("3.0.1", "3.1.0").unwrap_err();
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn different_major_fails_the_version_gate() {
        let e = kong_version_gate("3.1.1", "2.8.1").unwrap_err();
        assert!(e.contains("only 3.x"), "{e}");
        assert!(kong_version_gate("3.1.1", "4.0.0").is_err());
    }

    #[test]
    fn unparseable_versions_fail_the_version_gate() {
        assert!(kong_version_gate("3.1.1", "").is_err());
        assert!(kong_version_gate("3.1.1", "latest").is_err());
        assert!(kong_version_gate("dev", "3.1.1").is_err());
    }

    #[test]
    fn compatible_plugins_pass() {
        let cp = [pv("acl", "3.1.1"), pv("cors", "2.0.0"), pv("custom", "")];
        let dp = [
            pv("acl", "3.0.0"),
            pv("cors", "2.0.5"),
            pv("custom", "9.9"),
            pv("extra", "1.0"),
        ];
        assert_eq!(plugin_gate(&cp, &dp), Ok(()));
        assert_eq!(plugin_gate(&[], &[]), Ok(()));
    }

    #[test]
    fn missing_plugin_is_plugin_set_incompatible() {
        let (status, msg) = plugin_gate(&[pv("acl", "3.1.1")], &[pv("cors", "3.1.1")]).unwrap_err();
        assert_eq!(status, SyncStatus::PluginSetIncompatible);
        assert_eq!(
            msg,
            "configured plugin acl 3.1.1 is missing from the data plane"
        );
        let (_, msg) = plugin_gate(&[pv("acl", "")], &[]).unwrap_err();
        assert_eq!(msg, "configured plugin acl is missing from the data plane");
    }

    #[test]
    fn different_major_plugin_is_version_incompatible() {
        let (status, msg) = plugin_gate(&[pv("acl", "3.1.1")], &[pv("acl", "2.1.1")]).unwrap_err();
        assert_eq!(status, SyncStatus::PluginVersionIncompatible);
        assert!(msg.contains("2.1.1") && msg.contains("3.1.1"), "{msg}");
    }

    #[test]
    fn newer_dp_plugin_minor_is_version_incompatible() {
        let (status, _) = plugin_gate(&[pv("acl", "3.0.0")], &[pv("acl", "3.1.0")]).unwrap_err();
        assert_eq!(status, SyncStatus::PluginVersionIncompatible);
    }

    #[test]
    fn unparseable_plugin_versions_only_pass_when_equal() {
        assert_eq!(plugin_gate(&[pv("x", "dev")], &[pv("x", "dev")]), Ok(()));
        assert!(plugin_gate(&[pv("x", "dev")], &[pv("x", "1.0")]).is_err());
    }

    #[test]
    fn sync_status_uses_kong_strings() {
        assert_eq!(SyncStatus::Normal.as_str(), "normal");
        assert_eq!(
            SyncStatus::KongVersionIncompatible.to_string(),
            "kong_version_incompatible"
        );
        assert_eq!(
            SyncStatus::PluginSetIncompatible.as_str(),
            "plugin_set_incompatible"
        );
        assert_eq!(
            SyncStatus::PluginVersionIncompatible.as_str(),
            "plugin_version_incompatible"
        );
        assert_eq!(SyncStatus::Unknown.as_str(), "unknown");
    }
}
