//! Why a `/v1/outlet` message was refused, and the close code a control plane answers.

use std::fmt;

use super::PING_HASH_LEN;
use crate::channel::close_code;
use crate::config::ConfigError;

/// WebSocket close code 1008, policy violation (the channel layer's table lacks it).
const POLICY_VIOLATION: u16 = 1008;

/// Which message an [`OutletError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Message {
    /// The data plane's `basic_info`.
    BasicInfo,
    /// The control plane's `reconfigure`.
    Reconfigure,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Message::BasicInfo => "basic_info",
            Message::Reconfigure => "reconfigure",
        })
    }
}

/// Why a `/v1/outlet` message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutletError {
    /// A `reconfigure` frame could not be inflated: it is neither gzip nor zlib, it is
    /// corrupt, or it inflates past the cap. The cause is the [`ConfigError`] (`source()`).
    Inflate(ConfigError),
    /// The message is not valid JSON; holds the parser's message. Close code 1007.
    Json {
        /// The message concerned.
        message: Message,
        /// The JSON parser's message.
        error: String,
    },
    /// The message is valid JSON but not an object; holds what it is instead (e.g.
    /// `an array`). Close code 1008.
    NotAnObject {
        /// The message concerned.
        message: Message,
        /// What the JSON is instead.
        got: &'static str,
    },
    /// The first message's `type` is not `basic_info`: holds the `type` given (cut to 64
    /// bytes), or `None` when it is absent or not a string. Close code 1008.
    WrongType {
        /// The `type` the peer sent.
        got: Option<String>,
    },
    /// A required field is absent (`plugins` in `basic_info`, `config_table` in
    /// `reconfigure`). Close code 1008.
    Missing {
        /// The message concerned.
        message: Message,
        /// The absent field.
        field: &'static str,
    },
    /// A field has the wrong JSON type. Close code 1008.
    Invalid {
        /// The message concerned.
        message: Message,
        /// Where, e.g. `plugins[3].name` (a label key in it is cut to 64 bytes).
        field: String,
        /// What it must be, e.g. `a string`.
        expected: &'static str,
        /// What it is, e.g. `a number`.
        got: &'static str,
    },
    /// A ping payload neither empty nor [`PING_HASH_LEN`] bytes long. Close code 1008.
    PingLength {
        /// The payload's length.
        len: usize,
    },
    /// A 32-byte ping payload that is not printable ASCII. Close code 1008.
    PingNotText,
}

impl OutletError {
    /// The WebSocket close code a control plane answers this error with: 1007 (invalid
    /// payload) for undecodable JSON or compressed data, 1009 for a frame that inflates
    /// past the cap, 1008 (policy violation) for everything else. A data plane does not
    /// close on a bad `reconfigure` (it keeps its config), so there the code is only
    /// informative.
    pub fn close_code(&self) -> u16 {
        match self {
            OutletError::Json { .. } => close_code::INVALID_PAYLOAD,
            OutletError::Inflate(ConfigError::TooLarge { .. }) => close_code::MESSAGE_TOO_BIG,
            OutletError::Inflate(_) => close_code::INVALID_PAYLOAD,
            _ => POLICY_VIOLATION,
        }
    }
}

impl fmt::Display for OutletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutletError::Inflate(_) => f.write_str(
                "the reconfigure frame could not be inflated; \
                 a control plane must send gzip or zlib compressed JSON",
            ),
            OutletError::Json { message, error } => {
                write!(f, "the {message} message is not valid JSON: {error}")
            }
            OutletError::NotAnObject { message, got } => {
                write!(f, "the {message} message must be a JSON object, got {got}")
            }
            OutletError::WrongType { got: Some(t) } => write!(
                f,
                "the first message has type {t:?}; a data plane must send basic_info first"
            ),
            OutletError::WrongType { got: None } => f.write_str(
                "the first message has no string type; a data plane must send basic_info first",
            ),
            OutletError::Missing {
                message: Message::BasicInfo,
                field,
            } => write!(
                f,
                "basic_info has no {field}; data planes older than Kong 2.3 \
                 do not send it and cannot be served"
            ),
            OutletError::Missing { message, field } => write!(
                f,
                "the {message} message has no {field}; the control plane sent no config, \
                 so the applied config stays"
            ),
            OutletError::Invalid {
                message,
                field,
                expected,
                got,
            } => write!(
                f,
                "{field} in the {message} message must be {expected}, got {got}"
            ),
            OutletError::PingLength { len } => write!(
                f,
                "a ping carried {len} bytes; a data plane must ping its {PING_HASH_LEN}-character \
                 config hash (or nothing, before Kong 3.6)"
            ),
            OutletError::PingNotText => f.write_str(
                "a ping carried 32 bytes that are not printable ASCII; \
                 a config hash is 32 hex characters",
            ),
        }
    }
}

impl std::error::Error for OutletError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutletError::Inflate(e) => Some(e),
            _ => None,
        }
    }
}


/// `s` cut to at most 64 bytes at a character boundary: peer text kept in an error.
pub(crate) fn cut(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_interop_json() {
        let json = OutletError::Json {
            message: Message::BasicInfo,
            error: "EOF".into(),
        };
        assert_eq!(json.close_code(), 1007);
        assert_eq!(OutletError::PingLength { len: 3 }.close_code(), 1008);
        assert_eq!(OutletError::WrongType { got: None }.close_code(), 1008);
        let big = OutletError::Inflate(ConfigError::TooLarge { limit: 1 });
        assert_eq!(big.close_code(), 1009);
        assert_eq!(
            OutletError::Inflate(ConfigError::NotCompressed).close_code(),
            1007
        );
    }

    #[test]
    fn inflate_error_keeps_its_cause_in_source_only() {
        use std::error::Error as _;
        let e = OutletError::Inflate(ConfigError::NotCompressed);
        assert!(!e.to_string().contains("neither gzip nor zlib"), "{e}");
        assert_eq!(
            e.source().map(|s| s.to_string()),
            Some(ConfigError::NotCompressed.to_string())
        );
    }

    #[test]
    fn cut_respects_char_boundaries() {
        let s = "é".repeat(40);
        let c = cut(&s);
        assert!(c.len() <= 64 && s.starts_with(&c), "{c}");
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn error_stays_small() {
        let size = std::mem::size_of::<OutletError>();
        assert!(size <= 72, "{size}");
    }
}
