//! Who the data plane is, as it tells the CP on every request: the `kong-node-id`,
//! `kong-version` and `kong-hostname` headers (and, for an upgrade, the same three in the
//! query; see [`crate::upgrade`]).

#[cfg(feature = "dp")]
use super::head::push_header;
use super::HttpError;

/// The longest node id, hostname or version accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

/// Header carrying a node's id, on DP requests and CP responses.
pub const HEADER_NODE_ID: &str = "kong-node-id";
/// Header carrying the DP's Kong version.
pub const HEADER_VERSION: &str = "kong-version";
/// Header carrying the DP's hostname.
pub const HEADER_HOSTNAME: &str = "kong-hostname";

/// Who a node is: what the DP sends in its requests and upgrades.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NodeIdentity {
    /// The node id (Kong uses a UUID). Required.
    pub node_id: String,
    /// The node's hostname. Optional: empty if unknown.
    pub hostname: String,
    /// The node's Kong version, `x.y.z`. Required.
    pub version: String,
}

impl NodeIdentity {
    /// A node identity from its three parts.
    pub fn new(
        node_id: impl Into<String>,
        hostname: impl Into<String>,
        version: impl Into<String>,
    ) -> NodeIdentity {
        NodeIdentity {
            node_id: node_id.into(),
            hostname: hostname.into(),
            version: version.into(),
        }
    }

    /// Checks that this identity can be sent as Kong sends it, raw in a query and in
    /// headers: node id and version not empty, each part at most [`MAX_IDENTITY_LEN`]
    /// bytes of visible ASCII other than `&`, `#` and `%`.
    pub fn validate(&self) -> Result<(), HttpError> {
        for (field, value, required) in [
            ("node id", &self.node_id, true),
            ("hostname", &self.hostname, false),
            ("version", &self.version, true),
        ] {
            if required && value.is_empty() {
                return Err(HttpError::InvalidNode(format!("the {field} is empty")));
            }
            if value.len() > MAX_IDENTITY_LEN {
                return Err(HttpError::InvalidNode(format!(
                    "the {field} is longer than {MAX_IDENTITY_LEN} bytes"
                )));
            }
            if !value.bytes().all(query_safe) {
                return Err(HttpError::InvalidNode(format!(
                    "the {field} {value:?} has a character other than visible ASCII, or one of & # %"
                )));
            }
        }
        Ok(())
    }
}

/// Whether `b` may be sent raw in a query value or a header: visible ASCII other than
/// `&`, `#` and `%`.
pub(crate) fn query_safe(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"&#%".contains(&b)
}

/// Appends the DP's three identity headers (values that cannot be sent are left out).
#[cfg(feature = "dp")]
pub(crate) fn push_node_headers(out: &mut Vec<u8>, node: &NodeIdentity) {
    for (name, value) in [
        (HEADER_NODE_ID, &node.node_id),
        (HEADER_VERSION, &node.version),
        (HEADER_HOSTNAME, &node.hostname),
    ] {
        if value.bytes().all(query_safe) {
            push_header(out, name, value.as_bytes());
        }
    }
}
