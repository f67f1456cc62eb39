//! The admin's TOML file, typed and validated. Every error names the key, and
//! the line where the file has one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::tls::{self, LinkTls, RootsSource};

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
    pub inbox: InboxConfig,
    pub rooms: Vec<RoomConfig>,
    /// Issue 11: the team desks (xep/desk.md).
    pub desks: Vec<DeskConfig>,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

/// Who may create a room by joining a room name nobody uses yet. Rooms of
/// the file's `[[rooms]]` exist whatever this says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCreators {
    /// Anyone on the federation.
    Anyone,
    /// Users of these domains only (none: no room is created by a join).
    Domains(Vec<String>),
}

impl RoomCreators {
    pub fn allows(&self, domain: &str) -> bool {
        match self {
            RoomCreators::Anyone => true,
            RoomCreators::Domains(d) => d.iter().any(|x| x.eq_ignore_ascii_case(domain)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Where to serve Prometheus text (`GET /metrics`); off when `None`.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct GroupsConfig {
    /// How many recent messages a joiner gets (XEP-0045 §7.2.15).
    pub history: usize,
    /// Above this many members, a read marker is reflected only to the
    /// message's sender instead of every occupant.
    pub marker_reflection_limit: usize,
    /// Who may create rooms by joining them.
    pub room_creators: RoomCreators,
    /// How many rooms one user may create by joining (file rooms not counted).
    pub max_rooms_per_creator: usize,
    /// Sessions one room may hold at once (occupancy is kept on disk).
    pub max_occupants_per_room: usize,
    /// Room sessions one user (bare JID) may hold at once, all rooms together.
    pub max_joins_per_user: usize,
}

/// Issue 11: a team desk declared in the file (xep/desk.md).
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// `support` is `support@<component.jid>`.
    pub name: String,
    /// In the order of the file: round-robin goes round in it.
    pub agents: Vec<BareJid>,
    pub assignment: Assignment,
    pub predefined: Vec<Predefined>,
}

impl DeskConfig {
    pub fn is_agent(&self, jid: &str) -> bool {
        self.agents.iter().any(|a| a.as_str() == jid)
    }
}

/// How a desk's new conversations get an assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    /// Agents assign conversations themselves.
    #[default]
    Manual,
    /// The next available agent, in the order of the file.
    RoundRobin,
}

/// A message agents pick from a menu instead of typing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predefined {
    pub title: String,
    pub text: String,
}

/// A room declared in the file, with a fixed member list.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The room's node: `team` for team@chat.example.org.
    pub name: String,
    pub members: Vec<BareJid>,
    /// The subject the room is given (XEP-0045 §8.1), applied when the
    /// file's value changes; members may change it meanwhile.
    pub subject: Option<String>,
}

/// The longest room subject, in bytes (UTF-8): a subject is kept for as long
/// as the room and sent to everyone who joins, so it is bounded like a body.
pub const MAX_SUBJECT_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct ComponentConfig {
    pub jid: BareJid,
    /// Where to connect, in turn: one server, or the nodes of a cluster
    /// (a node that cannot be reached or drops the stream is left for the
    /// next).
    pub servers: Vec<String>,
    pub secret: String,
    pub keepalive: Duration,
    pub reconnect_max: Duration,
    /// `component.tls = true`: direct TLS to the server, its name verified
    /// (issue 12); `None` is the plain TCP link.
    pub tls: Option<LinkTls>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The sled directory (`storage.backend = "sled"`, the default).
    pub path: PathBuf,
    pub backend: StorageBackend,
    pub cache_bytes: u64,
    pub flush_batch: usize,
    /// Statuses older than this are removed; `None` keeps them forever.
    pub retention: Option<Duration>,
}

/// Where the store lives (issue 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// A sled directory at `storage.path`.
    Sled,
    /// A PostgreSQL database: `storage.url` without the password, which is
    /// read from `storage.password_file` (never written in the config).
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawBackend {
    #[default]
    Sled,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub offline: OfflinePolicy,
    /// After a (re)connect, how long a contact's presence stays unknown
    /// (messages to them wait) before a missing probe answer means offline.
    pub probe_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_queued_per_contact: usize,
    /// A whole stanza as read from the stream, in bytes.
    pub max_stanza_bytes: usize,
    /// Elements nested in a stanza, the stanza itself counted as 1.
    pub max_depth: usize,
    /// One attribute value, in bytes (escaped, as on the wire).
    pub max_attribute_bytes: usize,
    /// One element or attribute name, prefix included, in bytes.
    pub max_name_bytes: usize,
    /// Stanzas per second one sender (bare JID) may send, sustained.
    pub rate_per_second: f64,
    /// Stanzas one sender may send at once above the sustained rate.
    pub rate_burst: u32,
    /// Refused messages kept per sender for the status query; older
    /// refusals are dropped so a flood cannot grow the store.
    pub max_refusals_per_sender: usize,
    /// Messages held in memory, all senders together, while contacts'
    /// presence is unknown after a (re)connect.
    pub max_waiting_for_presence: usize,
    /// New desk conversations one remote server's users may open per
    /// minute (as a burst, refilled over the minute). Each new conversation
    /// reaches every available agent; the per-sender rate does not bound a
    /// server that makes up fresh JIDs.
    pub desk_openings_per_domain_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// Avaya's rule: a message that is only an attachment gets no read status.
    pub attachments_get_read_status: bool,
    /// Whether a user who has not chosen sends read receipts.
    pub send_read_receipts: bool,
    // --- issue 9: the `status` ad-hoc command (xep/status-command.md) ---
    /// Characters of a sent message's text kept for the `status` command's
    /// rows; 0 keeps no text at all.
    pub preview_chars: usize,
}

/// Issue 10: the conversation list (xep/inbox.md).
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Keep each user's conversation list (on by default; off saves its
    /// writes, and its IQs and commands then say it is off).
    pub enabled: bool,
}

/// `status.preview_chars` default: no text is kept unless the admin asks.
pub const DEFAULT_PREVIEW_CHARS: usize = 0;
/// Most characters `status.preview_chars` may keep: a preview, not a copy.
pub const MAX_PREVIEW_CHARS: usize = 200;

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
    inbox: RawInbox,
    #[serde(default)]
    rooms: Vec<RawRoom>,
    #[serde(default)]
    desks: Vec<RawDesk>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    #[serde(default = "default_history")]
    history: usize,
    #[serde(default = "default_marker_reflection_limit")]
    marker_reflection_limit: usize,
    room_creators: Option<Vec<String>>,
    #[serde(default = "default_max_rooms_per_creator")]
    max_rooms_per_creator: usize,
    #[serde(default = "default_max_occupants_per_room")]
    max_occupants_per_room: usize,
    #[serde(default = "default_max_joins_per_user")]
    max_joins_per_user: usize,
}

impl Default for RawGroups {
    fn default() -> Self {
        Self {
            history: default_history(),
            marker_reflection_limit: default_marker_reflection_limit(),
            room_creators: None,
            max_rooms_per_creator: default_max_rooms_per_creator(),
            max_occupants_per_room: default_max_occupants_per_room(),
            max_joins_per_user: default_max_joins_per_user(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDesk {
    name: String,
    agents: Vec<String>,
    #[serde(default)]
    assignment: Assignment,
    #[serde(default)]
    predefined: Vec<RawPredefined>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPredefined {
    title: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    name: String,
    members: Vec<String>,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    server: RawServers,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "default_keepalive_secs")]
    keepalive_secs: u64,
    #[serde(default = "default_reconnect_max_secs")]
    reconnect_max_secs: u64,
    #[serde(default)]
    tls: bool,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
}

/// `server = "host:port"`, or a list of them: the nodes of a cluster.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawServers {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default)]
    backend: RawBackend,
    /// Required for sled.
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "default_cache_mb")]
    cache_mb: u64,
    #[serde(default = "default_flush_batch")]
    flush_batch: usize,
    #[serde(default)]
    retention_days: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresence {
    #[serde(default)]
    offline: OfflinePolicy,
    #[serde(default = "default_probe_wait_ms")]
    probe_wait_ms: u64,
}

impl Default for RawPresence {
    fn default() -> Self {
        Self {
            offline: OfflinePolicy::default(),
            probe_wait_ms: default_probe_wait_ms(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_max_queued")]
    max_queued_per_contact: usize,
    #[serde(default = "default_max_stanza_bytes")]
    max_stanza_bytes: usize,
    #[serde(default = "default_max_depth")]
    max_depth: usize,
    #[serde(default = "default_max_attribute_bytes")]
    max_attribute_bytes: usize,
    #[serde(default = "default_max_name_bytes")]
    max_name_bytes: usize,
    #[serde(default = "default_rate_per_second")]
    rate_per_second: f64,
    #[serde(default = "default_rate_burst")]
    rate_burst: u32,
    #[serde(default = "default_max_refusals_per_sender")]
    max_refusals_per_sender: usize,
    #[serde(default = "default_max_waiting_for_presence")]
    max_waiting_for_presence: usize,
    #[serde(default = "default_desk_openings_per_domain_per_minute")]
    desk_openings_per_domain_per_minute: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_queued_per_contact: default_max_queued(),
            max_stanza_bytes: default_max_stanza_bytes(),
            max_depth: default_max_depth(),
            max_attribute_bytes: default_max_attribute_bytes(),
            max_name_bytes: default_max_name_bytes(),
            rate_per_second: default_rate_per_second(),
            rate_burst: default_rate_burst(),
            max_refusals_per_sender: default_max_refusals_per_sender(),
            max_waiting_for_presence: default_max_waiting_for_presence(),
            desk_openings_per_domain_per_minute: default_desk_openings_per_domain_per_minute(),
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
    #[serde(default = "default_preview_chars")]
    preview_chars: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    #[serde(default = "default_true")]
    enabled: bool,
}

impl Default for RawInbox {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_preview_chars() -> usize {
    DEFAULT_PREVIEW_CHARS
}

impl Default for RawStatus {
    fn default() -> Self {
        Self {
            attachments_get_read_status: false,
            send_read_receipts: true,
            preview_chars: DEFAULT_PREVIEW_CHARS,
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
// Prosody's s2s default (s2s_stanza_size_limit, 512 KiB): anything a server
// will carry across federation fits, one stanza cannot hold much memory.
fn default_max_stanza_bytes() -> usize {
    512 * 1024
}
// Real stanzas nest a handful deep (XHTML-IM, forms in commands stay under
// 16); 64 leaves room and keeps recursive walks far from the stack's end.
fn default_max_depth() -> usize {
    64
}
// A full JID is at most 3071 bytes (RFC 7622); ids and the like are short.
fn default_max_attribute_bytes() -> usize {
    4096
}
fn default_max_name_bytes() -> usize {
    256
}
// A person types far slower; a client catching up after reconnecting sends
// receipts and markers in bursts, which the burst absorbs.
fn default_rate_per_second() -> f64 {
    20.0
}
fn default_rate_burst() -> u32 {
    200
}
fn default_max_refusals_per_sender() -> usize {
    100
}
fn default_max_waiting_for_presence() -> usize {
    10_000
}
// A busy desk opens a few conversations a minute from one server; a
// thousand agents' screens flooded by a made-up crowd is the harm.
fn default_desk_openings_per_domain_per_minute() -> u32 {
    60
}
fn default_probe_wait_ms() -> u64 {
    5000
}
fn default_max_rooms_per_creator() -> usize {
    10
}
fn default_max_occupants_per_room() -> usize {
    1000
}
fn default_max_joins_per_user() -> usize {
    100
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
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
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
        let servers = match &raw.component.server {
            RawServers::One(one) => vec![one.clone()],
            RawServers::Several(several) => several.clone(),
        };
        if servers.is_empty() {
            return Err(invalid(
                "component.server",
                "is an empty list: name the server's component port, host:port".into(),
            ));
        }
        if let Some(bad) = servers
            .iter()
            .find(|s| s.trim().is_empty() || !s.contains(':'))
        {
            return Err(invalid(
                "component.server",
                format!("expected host:port of the server's component port, got {bad:?}"),
            ));
        }
        let tls = link_tls(&raw.component, &invalid)?;
        let secret = match (
            raw.component.secret.take(),
            raw.component.secret_file.take(),
        ) {
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
        if secret == EXAMPLE_SECRET {
            return Err(invalid(
                "component.secret",
                format!(
                    "is still the example's {EXAMPLE_SECRET:?}: choose a secret of your own and set the same value as component_secret in the server's config"
                ),
            ));
        }
        if raw.status.preview_chars > MAX_PREVIEW_CHARS {
            return Err(invalid(
                "status.preview_chars",
                format!(
                    "must be at most {MAX_PREVIEW_CHARS} (a preview, not a copy of the message), got {}",
                    raw.status.preview_chars
                ),
            ));
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
        let backend = match raw.storage.backend {
            RawBackend::Sled => {
                if raw.storage.path.is_none() {
                    return Err(invalid(
                        "storage.path",
                        "required: the sled directory".into(),
                    ));
                }
                StorageBackend::Sled
            }
            RawBackend::Postgres => {
                let Some(url) = raw.storage.url.clone() else {
                    return Err(invalid(
                        "storage.url",
                        "required with backend = \"postgres\": postgres://USER@HOST:PORT/DATABASE"
                            .into(),
                    ));
                };
                if url
                    .split_once('@')
                    .is_some_and(|(userinfo, _)| userinfo.matches(':').count() > 1)
                {
                    return Err(invalid(
                        "storage.url",
                        "holds a password: put it in the file storage.password_file names".into(),
                    ));
                }
                StorageBackend::Postgres {
                    url,
                    password_file: raw.storage.password_file.clone(),
                }
            }
        };
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
        for (key, value, min) in [
            ("limits.max_stanza_bytes", raw.limits.max_stanza_bytes, 4096),
            ("limits.max_depth", raw.limits.max_depth, 4),
            (
                "limits.max_attribute_bytes",
                raw.limits.max_attribute_bytes,
                256,
            ),
            ("limits.max_name_bytes", raw.limits.max_name_bytes, 64),
            (
                "limits.max_refusals_per_sender",
                raw.limits.max_refusals_per_sender,
                1,
            ),
            ("limits.rate_burst", raw.limits.rate_burst as usize, 1),
            (
                "limits.desk_openings_per_domain_per_minute",
                raw.limits.desk_openings_per_domain_per_minute as usize,
                1,
            ),
        ] {
            if value < min {
                return Err(invalid(key, format!("must be at least {min}, got {value}")));
            }
        }
        if raw.limits.max_depth > 1024 {
            return Err(invalid(
                "limits.max_depth",
                "must be at most 1024 (deeper nesting risks the stack)".into(),
            ));
        }
        if !(raw.limits.rate_per_second.is_finite() && raw.limits.rate_per_second > 0.0) {
            return Err(invalid(
                "limits.rate_per_second",
                format!(
                    "must be a number above 0, got {}",
                    raw.limits.rate_per_second
                ),
            ));
        }
        let room_creators = match raw.groups.room_creators {
            None => RoomCreators::Domains(vec![own_server_domain(&jid)]),
            Some(list) if list.iter().any(|d| d == "*") => RoomCreators::Anyone,
            Some(list) => {
                let mut domains = Vec::with_capacity(list.len());
                for d in list {
                    let domain = BareJid::new(&d)
                        .ok()
                        .filter(|j| j.node().is_none())
                        .ok_or_else(|| {
                            invalid(
                                "groups.room_creators",
                                format!(
                                    "{d:?} is not a domain (give domains, or \"*\" for anyone)"
                                ),
                            )
                        })?;
                    domains.push(domain.as_str().to_owned());
                }
                RoomCreators::Domains(domains)
            }
        };
        let metrics_listen = match raw.metrics.listen {
            None => None,
            Some(addr) => Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
                invalid(
                    "metrics.listen",
                    format!("expected ip:port such as 127.0.0.1:9464, got {addr:?}: {e}"),
                )
            })?),
        };
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
            if let Some(subject) = &room.subject
                && subject.len() > MAX_SUBJECT_BYTES
            {
                return Err(invalid(
                    "rooms.subject",
                    format!(
                        "the subject of room {:?} is {} bytes; at most {MAX_SUBJECT_BYTES}",
                        room.name,
                        subject.len()
                    ),
                ));
            }
            rooms.push(RoomConfig {
                name: room.name.to_lowercase(),
                members,
                subject: room.subject,
            });
        }

        let desks = desks_of(raw.desks, &rooms, invalid)?;

        Ok(Config {
            component: ComponentConfig {
                jid,
                servers,
                secret,
                keepalive: Duration::from_secs(raw.component.keepalive_secs),
                reconnect_max: Duration::from_secs(raw.component.reconnect_max_secs),
                tls,
            },
            storage: StorageConfig {
                path: raw.storage.path.unwrap_or_default(),
                backend,
                cache_bytes: raw.storage.cache_mb * 1024 * 1024,
                flush_batch: raw.storage.flush_batch,
                retention: (raw.storage.retention_days > 0)
                    .then(|| Duration::from_secs(raw.storage.retention_days * 86_400)),
            },
            presence: PresenceConfig {
                offline: raw.presence.offline,
                probe_wait: Duration::from_millis(raw.presence.probe_wait_ms),
            },
            limits: LimitsConfig {
                max_body_bytes: raw.limits.max_body_bytes,
                max_queued_per_contact: raw.limits.max_queued_per_contact,
                max_stanza_bytes: raw.limits.max_stanza_bytes,
                max_depth: raw.limits.max_depth,
                max_attribute_bytes: raw.limits.max_attribute_bytes,
                max_name_bytes: raw.limits.max_name_bytes,
                rate_per_second: raw.limits.rate_per_second,
                rate_burst: raw.limits.rate_burst,
                max_refusals_per_sender: raw.limits.max_refusals_per_sender,
                max_waiting_for_presence: raw.limits.max_waiting_for_presence,
                desk_openings_per_domain_per_minute: raw.limits.desk_openings_per_domain_per_minute,
            },
            status: StatusConfig {
                attachments_get_read_status: raw.status.attachments_get_read_status,
                send_read_receipts: raw.status.send_read_receipts,
                preview_chars: raw.status.preview_chars,
            },
            groups: GroupsConfig {
                history: raw.groups.history,
                marker_reflection_limit: raw.groups.marker_reflection_limit,
                room_creators,
                max_rooms_per_creator: raw.groups.max_rooms_per_creator,
                max_occupants_per_room: raw.groups.max_occupants_per_room,
                max_joins_per_user: raw.groups.max_joins_per_user,
            },
            inbox: InboxConfig {
                enabled: raw.inbox.enabled,
            },
            rooms,
            desks,
            log: LogConfig {
                level: raw.log.level,
            },
            metrics: MetricsConfig {
                listen: metrics_listen,
            },
        })
    }
}

/// `component.tls`, `component.ca_file` and `component.tls_server_name`:
/// the CA file is read and the name checked here, so `--check-config`
/// reports them.
fn link_tls(
    raw: &RawComponent,
    invalid: &impl Fn(&'static str, String) -> ConfigError,
) -> Result<Option<LinkTls>, ConfigError> {
    if !raw.tls {
        // Set without `tls = true` they would be silently ignored, and the
        // admin would believe the link is encrypted.
        for (key, set) in [
            ("component.ca_file", raw.ca_file.is_some()),
            ("component.tls_server_name", raw.tls_server_name.is_some()),
        ] {
            if set {
                return Err(invalid(
                    key,
                    "only means something with component.tls = true (the link is plain TCP without it)"
                        .into(),
                ));
            }
        }
        return Ok(None);
    }
    let servers = match &raw.server {
        RawServers::One(one) => std::slice::from_ref(one),
        RawServers::Several(several) => several.as_slice(),
    };
    let mut names = Vec::with_capacity(servers.len());
    for server in servers {
        let (name_key, name) = match &raw.tls_server_name {
            Some(name) => ("component.tls_server_name", name.as_str()),
            None => ("component.server", tls::host_of(server)),
        };
        let server_name = tls::server_name(name).map_err(|e| {
            invalid(
                name_key,
                format!("{e}: the server's certificate is verified for this name (set component.tls_server_name to the name it carries)"),
            )
        })?;
        names.push((server.clone(), server_name));
    }
    let (roots, source) = match &raw.ca_file {
        Some(path) => (
            tls::roots_from_file(path).map_err(|e| invalid("component.ca_file", e.to_string()))?,
            RootsSource::File(path.clone()),
        ),
        None => (
            tls::system_roots().map_err(|e| invalid("component.ca_file", e.to_string()))?,
            RootsSource::System,
        ),
    };
    LinkTls::new(names, roots, source)
        .map(Some)
        .map_err(|e| invalid("component.tls", e.to_string()))
}

/// The secret of the shipped example file, which must not reach production.
pub const EXAMPLE_SECRET: &str = "change-me";

/// The server a component is a subdomain of: `localhost` for
/// `chat.localhost`. A single-label component stands for itself.
pub fn own_server_domain(component: &BareJid) -> String {
    let d = component.domain().as_str();
    match d.split_once('.') {
        Some((_, parent)) if !parent.is_empty() => parent.to_owned(),
        _ => d.to_owned(),
    }
}

/// Room names are JID nodes without escapes, so they can never be mistaken
/// for a tracked address (whose node holds an escaped `@`).
/// Predefined messages longer than this are refused: they go out as one
/// message, within any server's stanza limit.
const MAX_PREDEFINED_BYTES: usize = 4096;

fn desks_of(
    raw: Vec<RawDesk>,
    rooms: &[RoomConfig],
    invalid: impl Fn(&'static str, String) -> ConfigError,
) -> Result<Vec<DeskConfig>, ConfigError> {
    let mut desks: Vec<DeskConfig> = Vec::with_capacity(raw.len());
    for desk in raw {
        if !is_room_name(&desk.name) {
            return Err(invalid(
                "desks.name",
                format!(
                    "{:?} is not a desk name (letters, digits, '-', '_' and '.', at most 64)",
                    desk.name
                ),
            ));
        }
        let name = desk.name.to_lowercase();
        if desks.iter().any(|d| d.name == name) {
            return Err(invalid(
                "desks.name",
                format!("desk {name:?} is declared twice"),
            ));
        }
        if rooms.iter().any(|r| r.name == name) {
            return Err(invalid(
                "desks.name",
                format!(
                    "{name:?} is both a room and a desk; a room and a desk cannot share a name (they would share an address)"
                ),
            ));
        }
        if desk.agents.is_empty() {
            return Err(invalid(
                "desks.agents",
                format!("desk {name:?} has no agents; name at least one (a bare JID)"),
            ));
        }
        let mut agents: Vec<BareJid> = Vec::with_capacity(desk.agents.len());
        for a in &desk.agents {
            let jid = BareJid::new(a).map_err(|e| {
                invalid(
                    "desks.agents",
                    format!("{a:?} in desk {name:?} is not a JID: {e}"),
                )
            })?;
            if jid.node().is_none() {
                return Err(invalid(
                    "desks.agents",
                    format!("{a:?} in desk {name:?} is a server, not a user"),
                ));
            }
            if !agents.contains(&jid) {
                agents.push(jid);
            }
        }
        let mut predefined: Vec<Predefined> = Vec::with_capacity(desk.predefined.len());
        for p in desk.predefined {
            let title = p.title.trim().to_owned();
            if title.is_empty() || p.text.trim().is_empty() {
                return Err(invalid(
                    "desks.predefined",
                    format!("a predefined message of desk {name:?} needs a title and a text"),
                ));
            }
            if predefined.iter().any(|q| q.title == title) {
                return Err(invalid(
                    "desks.predefined",
                    format!("desk {name:?} has two predefined messages titled {title:?}"),
                ));
            }
            if p.text.len() > MAX_PREDEFINED_BYTES {
                return Err(invalid(
                    "desks.predefined",
                    format!(
                        "the predefined message {title:?} of desk {name:?} is {} bytes; at most {MAX_PREDEFINED_BYTES}",
                        p.text.len()
                    ),
                ));
            }
            predefined.push(Predefined {
                title,
                text: p.text,
            });
        }
        desks.push(DeskConfig {
            name,
            agents,
            assignment: desk.assignment,
            predefined,
        });
    }
    Ok(desks)
}

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
        let text = std::fs::read_to_string(path).unwrap();
        // The example's placeholder secret is refused on purpose (tested
        // below); everything else in the file must be valid as shipped.
        let example = parse(&text.replace(EXAMPLE_SECRET, "s3cret")).unwrap();
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
        let (e, m) = (&example.limits, &minimal.limits);
        assert_eq!(e.max_stanza_bytes, m.max_stanza_bytes);
        assert_eq!(e.max_depth, m.max_depth);
        assert_eq!(e.max_attribute_bytes, m.max_attribute_bytes);
        assert_eq!(e.max_name_bytes, m.max_name_bytes);
        assert_eq!(e.rate_per_second, m.rate_per_second);
        assert_eq!(e.rate_burst, m.rate_burst);
        assert_eq!(e.max_refusals_per_sender, m.max_refusals_per_sender);
        assert_eq!(e.max_waiting_for_presence, m.max_waiting_for_presence);
        assert_eq!(
            e.desk_openings_per_domain_per_minute,
            m.desk_openings_per_domain_per_minute
        );
        assert_eq!(example.presence.probe_wait, minimal.presence.probe_wait);
        assert_eq!(example.storage.retention, minimal.storage.retention);
        assert_eq!(example.groups.room_creators, minimal.groups.room_creators);
        assert_eq!(
            example.groups.max_rooms_per_creator,
            minimal.groups.max_rooms_per_creator
        );
        assert_eq!(example.metrics.listen, minimal.metrics.listen);
    }

    fn with_component(lines: &str) -> String {
        MINIMAL.replace(
            "secret = \"s3cret\"",
            &format!("secret = \"s3cret\"\n{lines}"),
        )
    }

    fn dev_cert(name: &str) -> String {
        format!("{}/certs/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn the_link_is_plain_unless_tls_is_asked_for() {
        assert!(parse(MINIMAL).unwrap().component.tls.is_none());
        assert!(
            parse(&with_component("tls = false"))
                .unwrap()
                .component
                .tls
                .is_none()
        );
    }

    #[test]
    fn tls_verifies_the_host_of_the_server_address_against_the_ca_file() {
        let text = with_component(&format!(
            "tls = true\nca_file = {:?}",
            dev_cert("component-ca.crt")
        ));
        let tls = parse(&text).unwrap().component.tls.unwrap();
        assert_eq!(tls.server_name.to_str(), "127.0.0.1");
        assert!(matches!(
            tls.server_name,
            rustls_pki_types::ServerName::IpAddress(_)
        ));
        assert_eq!(
            tls.roots,
            RootsSource::File(dev_cert("component-ca.crt").into())
        );
        let named = parse(&text.replace(
            "tls = true",
            "tls = true\ntls_server_name = \"xmpp.example.org\"",
        ))
        .unwrap();
        assert_eq!(
            named.component.tls.unwrap().server_name.to_str(),
            "xmpp.example.org"
        );
    }

    #[test]
    fn without_a_ca_file_the_system_roots_are_trusted_or_their_absence_said() {
        match parse(&with_component("tls = true")) {
            Ok(c) => assert_eq!(c.component.tls.unwrap().roots, RootsSource::System),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("component.ca_file") && e.contains("ca-certificates"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn tls_config_errors_name_the_key_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let key_only = dir.path().join("key.pem");
        // A PEM file with only a key in it: no certificate.
        let pem = std::fs::read_to_string(dev_cert("component-server.pem")).unwrap();
        let key = &pem[pem.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
        std::fs::write(&key_only, key).unwrap();
        let missing = dir.path().join("missing.pem");
        for (lines, key, says) in [
            (
                format!("tls = true\nca_file = {missing:?}"),
                "component.ca_file",
                "cannot read",
            ),
            (
                format!("tls = true\nca_file = {empty:?}"),
                "component.ca_file",
                "holds no certificate",
            ),
            (
                format!("tls = true\nca_file = {key_only:?}"),
                "component.ca_file",
                "holds no certificate",
            ),
            (
                format!(
                    "tls = true\nca_file = {:?}\ntls_server_name = \"not a name\"",
                    dev_cert("component-ca.crt")
                ),
                "component.tls_server_name",
                "is not a DNS name or an IP address",
            ),
            (
                format!("ca_file = {:?}", dev_cert("component-ca.crt")),
                "component.ca_file",
                "only means something with component.tls = true",
            ),
            (
                "tls_server_name = \"localhost\"".to_owned(),
                "component.tls_server_name",
                "only means something with component.tls = true",
            ),
            ("tls = \"yes\"".to_owned(), "tls", "invalid type"),
        ] {
            let e = parse(&with_component(&lines)).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{lines}: {e}");
        }
    }

    #[test]
    fn the_example_placeholder_secret_is_refused() {
        let text = MINIMAL.replace("s3cret", EXAMPLE_SECRET);
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("component.secret") && e.contains("component_secret"),
            "{e}"
        );
    }

    #[test]
    fn rooms_are_created_by_the_servers_own_users_unless_told_otherwise() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.groups.room_creators,
            RoomCreators::Domains(vec!["localhost".into()])
        );
        assert!(c.groups.room_creators.allows("localhost"));
        assert!(!c.groups.room_creators.allows("evil.example"));
        let anyone = parse(&format!("{MINIMAL}\n[groups]\nroom_creators = [\"*\"]\n")).unwrap();
        assert!(anyone.groups.room_creators.allows("evil.example"));
        let e = parse(&format!("{MINIMAL}\n[groups]\nroom_creators = [\"a@b\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.room_creators"), "{e}");
    }

    #[test]
    fn limits_below_their_floor_are_named() {
        for (key, bad) in [
            ("max_stanza_bytes", "100"),
            ("max_depth", "2000"),
            ("rate_per_second", "0.0"),
            ("rate_burst", "0"),
            ("desk_openings_per_domain_per_minute", "0"),
        ] {
            let text = format!("{MINIMAL}\n[limits]\n{key} = {bad}\n");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("limits.{key}")), "{key}: {e}");
        }
    }

    #[test]
    fn metrics_are_off_unless_given_an_address() {
        assert_eq!(parse(MINIMAL).unwrap().metrics.listen, None);
        let on = parse(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
        ))
        .unwrap();
        assert_eq!(on.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let e = parse(&format!("{MINIMAL}\n[metrics]\nlisten = \"localhost\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.listen"), "{e}");
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
    fn server_is_one_address_or_a_cluster_list() {
        let one = parse(MINIMAL).unwrap();
        assert_eq!(one.component.servers, ["127.0.0.1:5347"]);
        let list = MINIMAL.replace(
            "server = \"127.0.0.1:5347\"",
            "server = [\"127.0.0.1:5347\", \"127.0.0.2:5347\"]",
        );
        let c = parse(&list).unwrap();
        assert_eq!(c.component.servers, ["127.0.0.1:5347", "127.0.0.2:5347"]);
        for (bad, says) in [
            ("server = []", "empty list"),
            (
                "server = [\"127.0.0.1:5347\", \"nodeport\"]",
                "\"nodeport\"",
            ),
            ("server = \"\"", "host:port"),
        ] {
            let text = MINIMAL.replace("server = \"127.0.0.1:5347\"", bad);
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("component.server") && e.contains(says),
                "{bad}: {e}"
            );
        }
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
        assert_eq!(c.rooms[0].subject, None);
        let with = format!("{text}subject = \"Stand-ups at ten\"\n");
        let c = parse(&with).unwrap();
        assert_eq!(c.rooms[0].subject.as_deref(), Some("Stand-ups at ten"));
        let long = format!(
            "{text}subject = \"{}\"\n",
            "x".repeat(MAX_SUBJECT_BYTES + 1)
        );
        let e = parse(&long).unwrap_err().to_string();
        assert!(
            e.contains("rooms.subject") && e.contains("1025 bytes"),
            "{e}"
        );
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
