//! The size limits the reader enforces, and which one a stanza broke.

use std::fmt;

use crate::config::LimitsConfig;

/// What the reader accepts in one stanza (`limits.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attribute_bytes: usize,
    pub max_name_bytes: usize,
}

impl From<&LimitsConfig> for Limits {
    fn from(c: &LimitsConfig) -> Self {
        Limits {
            max_stanza_bytes: c.max_stanza_bytes,
            max_depth: c.max_depth,
            max_attribute_bytes: c.max_attribute_bytes,
            max_name_bytes: c.max_name_bytes,
        }
    }
}

impl Default for Limits {
    /// The config's defaults.
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 512 * 1024,
            max_depth: 64,
            max_attribute_bytes: 4096,
            max_name_bytes: 256,
        }
    }
}

/// The limit a stanza went over, with its configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    StanzaBytes(usize),
    Depth(usize),
    AttributeBytes(usize),
    NameBytes(usize),
}

impl Limit {
    /// The config key, as an admin would look it up.
    pub fn key(self) -> &'static str {
        match self {
            Limit::StanzaBytes(_) => "limits.max_stanza_bytes",
            Limit::Depth(_) => "limits.max_depth",
            Limit::AttributeBytes(_) => "limits.max_attribute_bytes",
            Limit::NameBytes(_) => "limits.max_name_bytes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Depth(n) => write!(f, "{} ({n} elements deep)", self.key()),
            Limit::StanzaBytes(n) | Limit::AttributeBytes(n) | Limit::NameBytes(n) => {
                write!(f, "{} ({n} bytes)", self.key())
            }
        }
    }
}
