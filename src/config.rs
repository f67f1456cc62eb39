//! The admin's TOML file, typed and validated. Every error names the key, and
//! the line where the file has one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// What to do with a message to a contact whose presence the sender may see
/// and who has no available resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OfflinePolicy {
    /// Refuse it with `recipient-unavailable` (DESIGN.md "chat unavailable").
    #[default]
    Reject,
    /// Hold it and deliver it when the contact comes online.
    Queue,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub component: ComponentConfig,
    pub storage: StorageConfig,
    pub presence: PresenceConfig,
    pub limits: LimitsConfig,
    pub status: StatusConfig,
    pub groups: GroupsConfig,
    pub rooms: Vec<RoomConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct GroupsConfig {
    /// How many recent messages a joiner gets (XEP-0045 §7.2.15).
    pub history: usize,
    /// Above this many members, a read marker is reflected only to the
    /// message's sender instead of every occupant.
    pub marker_reflection_limit: usize,
}

/// A room declared in the file, with a fixed member list.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The room's node: `team` for team@chat.example.org.
    pub name: String,
    pub members: Vec<BareJid>,
}

#[derive(Debug, Clone)]
pub struct ComponentConfig {
    pub jid: BareJid,
    pub server: String,
    pub secret: String,
    pub keepalive: Duration,
    pub reconnect_max: Duration,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub cache_bytes: u64,
    pub flush_batch: usize,
}

#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub offline: OfflinePolicy,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_queued_per_contact: usize,
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// Avaya's rule: a message that is only an attachment gets no read status.
    pub attachments_get_read_status: bool,
    /// Whether a user who has not chosen sends read receipts.
    pub send_read_receipts: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
}

// The raw file, as serde sees it. `deny_unknown_fields` turns a typo into an
// error that names the key and its line instead of a silently ignored setting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component: RawComponent,
    storage: RawStorage,
    #[serde(default)]
    presence: RawPresence,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    groups: RawGroups,
    #[serde(default)]
    rooms: Vec<RawRoom>,
    #[serde(default)]
    log: RawLog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    #[serde(default = "default_history")]
    history: usize,
    #[serde(default = "default_marker_reflection_limit")]
    marker_reflection_limit: usize,
}

impl Default for RawGroups {
    fn default() -> Self {
        Self {
            history: default_history(),
            marker_reflection_limit: default_marker_reflection_limit(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    name: String,
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    server: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_keepalive_secs")]
    keepalive_secs: u64,
    #[serde(default = "default_reconnect_max_secs")]
    reconnect_max_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: PathBuf,
    #[serde(default = "default_cache_mb")]
    cache_mb: u64,
    #[serde(default = "default_flush_batch")]
    flush_batch: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPresence {
    #[serde(default)]
    offline: OfflinePolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_max_queued")]
    max_queued_per_contact: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_queued_per_contact: default_max_queued(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    #[serde(default)]
    attachments_get_read_status: bool,
    #[serde(default = "default_true")]
    send_read_receipts: bool,
}

impl Default for RawStatus {
    fn default() -> Self {
        Self {
            attachments_get_read_status: false,
            send_read_receipts: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: default_log_level(),
        }
    }
}

fn default_keepalive_secs() -> u64 {
    30
}
fn default_reconnect_max_secs() -> u64 {
    30
}
fn default_cache_mb() -> u64 {
    64
}
fn default_flush_batch() -> usize {
    512
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_max_queued() -> usize {
    1000
}
fn default_history() -> usize {
    20
}
fn default_marker_reflection_limit() -> usize {
    50
}
fn default_true() -> bool {
    true
}
fn default_log_level() -> String {
    "info".into()
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` names the file in messages.
    /// Relative paths in the file are relative to the working directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };

        let jid = BareJid::new(&raw.component.jid)
            .map_err(|e| invalid("component.jid", format!("not a valid domain: {e}")))?;
        if jid.node().is_some() {
            return Err(invalid(
                "component.jid",
                format!("must be a bare domain such as chat.example.org, not {jid}"),
            ));
        }
        if raw.component.server.trim().is_empty() || !raw.component.server.contains(':') {
            return Err(invalid(
                "component.server",
                format!(
                    "expected host:port of the server's component port, got {:?}",
                    raw.component.server
                ),
            ));
        }
        let secret = match (raw.component.secret, raw.component.secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "component.secret",
                    "give either secret or secret_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "component.secret",
                    "missing: set secret or secret_file".into(),
                ));
            }
            (Some(s), None) => s,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map_err(|e| {
                    invalid(
                        "component.secret_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?
                .trim()
                .to_owned(),
        };
        if secret.is_empty() {
            return Err(invalid("component.secret", "is empty".into()));
        }
        if raw.component.keepalive_secs == 0 {
            return Err(invalid(
                "component.keepalive_secs",
                "must be at least 1".into(),
            ));
        }
        if raw.component.reconnect_max_secs == 0 {
            return Err(invalid(
                "component.reconnect_max_secs",
                "must be at least 1".into(),
            ));
        }
        if raw.storage.cache_mb == 0 {
            return Err(invalid("storage.cache_mb", "must be at least 1".into()));
        }
        if raw.storage.flush_batch == 0 {
            return Err(invalid("storage.flush_batch", "must be at least 1".into()));
        }
        if raw.limits.max_body_bytes == 0 {
            return Err(invalid(
                "limits.max_body_bytes",
                "must be at least 1".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&raw.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter",
                    raw.log.level
                ),
            ));
        }

        let mut rooms = Vec::with_capacity(raw.rooms.len());
        for room in raw.rooms {
            if !is_room_name(&room.name) {
                return Err(invalid(
                    "rooms.name",
                    format!(
                        "{:?} is not a room name (letters, digits, '-', '_' and '.', at most 64)",
                        room.name
                    ),
                ));
            }
            if rooms.iter().any(|r: &RoomConfig| r.name == room.name) {
                return Err(invalid(
                    "rooms.name",
                    format!("room {:?} is declared twice", room.name),
                ));
            }
            let mut members = Vec::with_capacity(room.members.len());
            for m in &room.members {
                let jid = BareJid::new(m).map_err(|e| {
                    invalid(
                        "rooms.members",
                        format!("{m:?} in room {:?} is not a JID: {e}", room.name),
                    )
                })?;
                if jid.node().is_none() {
                    return Err(invalid(
                        "rooms.members",
                        format!("{m:?} in room {:?} is a server, not a user", room.name),
                    ));
                }
                members.push(jid);
            }
            rooms.push(RoomConfig {
                name: room.name.to_lowercase(),
                members,
            });
        }

        Ok(Config {
            component: ComponentConfig {
                jid,
                server: raw.component.server,
                secret,
                keepalive: Duration::from_secs(raw.component.keepalive_secs),
                reconnect_max: Duration::from_secs(raw.component.reconnect_max_secs),
            },
            storage: StorageConfig {
                path: raw.storage.path,
                cache_bytes: raw.storage.cache_mb * 1024 * 1024,
                flush_batch: raw.storage.flush_batch,
            },
            presence: PresenceConfig {
                offline: raw.presence.offline,
            },
            limits: LimitsConfig {
                max_body_bytes: raw.limits.max_body_bytes,
                max_queued_per_contact: raw.limits.max_queued_per_contact,
            },
            status: StatusConfig {
                attachments_get_read_status: raw.status.attachments_get_read_status,
                send_read_receipts: raw.status.send_read_receipts,
            },
            groups: GroupsConfig {
                history: raw.groups.history,
                marker_reflection_limit: raw.groups.marker_reflection_limit,
            },
            rooms,
            log: LogConfig {
                level: raw.log.level,
            },
        })
    }
}

/// Room names are JID nodes without escapes, so they can never be mistaken
/// for a tracked address (whose node holds an escaped `@`).
pub fn is_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[component]
jid = "chat.localhost"
server = "127.0.0.1:5347"
secret = "s3cret"

[storage]
path = "data/tidemark"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_is_valid_and_says_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tidemark.toml"));
        let example = Config::load(path).unwrap();
        let minimal = parse(MINIMAL).unwrap();
        assert_eq!(example.storage.cache_bytes, minimal.storage.cache_bytes);
        assert_eq!(example.storage.flush_batch, minimal.storage.flush_batch);
        assert_eq!(example.limits.max_body_bytes, minimal.limits.max_body_bytes);
        assert_eq!(example.presence.offline, minimal.presence.offline);
        assert_eq!(example.component.keepalive, minimal.component.keepalive);
        assert_eq!(example.groups.history, minimal.groups.history);
        assert_eq!(
            example.groups.marker_reflection_limit,
            minimal.groups.marker_reflection_limit
        );
        assert_eq!(
            example.status.send_read_receipts,
            minimal.status.send_read_receipts
        );
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.component.jid.as_str(), "chat.localhost");
        assert_eq!(c.presence.offline, OfflinePolicy::Reject);
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.storage.cache_bytes, 64 * 1024 * 1024);
        assert!(!c.status.attachments_get_read_status);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("secret = \"s3cret\"", "secret = \"s3cret\"\nsecrte = \"x\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("secrte"), "{e}");
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINIMAL.replace("jid = \"chat.localhost\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("jid"), "{e}");
    }

    #[test]
    fn missing_secret_is_named() {
        let text = MINIMAL.replace("secret = \"s3cret\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("component.secret"), "{e}");
    }

    #[test]
    fn bad_policy_value_is_named() {
        let text = format!("{MINIMAL}\n[presence]\noffline = \"drop\"\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("offline") && e.contains("drop"), "{e}");
    }

    #[test]
    fn node_in_component_jid_is_refused() {
        let text = MINIMAL.replace("chat.localhost", "bot@chat.localhost");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("component.jid"), "{e}");
    }

    #[test]
    fn rooms_are_declared_with_members() {
        let text = format!(
            "{MINIMAL}\n[[rooms]]\nname = \"team\"\nmembers = [\"alice@localhost\", \"bob@localhost\"]\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.rooms[0].name, "team");
        assert_eq!(c.rooms[0].members.len(), 2);
        let bad = text.replace("bob@localhost", "localhost");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("rooms.members"), "{e}");
        let bad = text.replace("\"team\"", "\"te am\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("rooms.name"), "{e}");
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "secret = \"s3cret\"",
            &format!("secret_file = {:?}", secret.display().to_string()),
        );
        let c = Config::parse(&text, &dir.path().join("tidemark.toml")).unwrap();
        assert_eq!(c.component.secret, "from-file");
    }
}
