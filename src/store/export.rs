//! Export and import as logical records (`xep/export.md`): one JSON object
//! per line, the first a header naming the format and its version. Any
//! backend that passes the contract can be exported from and imported into,
//! so moving between backends, or between versions of one, is an export
//! followed by an import.

use serde::{Deserialize, Serialize};

use super::{
    ConversationKey, DeskConversation, DeskEventKind, Failure, InboxEntry, Membership,
    MessageRecord, Millis, Missed, OccupantRecord, RoomMessage, RoomRecord, RoomSubject, Seq,
    Store, StoreError, StoreResult,
};

pub const FORMAT: &str = "tidemark-export";
/// Version 1 was schema 1's tree dump in hex; version 2 is logical.
pub const VERSION: u32 = 2;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportRecord {
    Header {
        format: String,
        version: u32,
        /// Sequence numbers after the import start above this.
        next_seq: Seq,
    },
    /// A 1:1 message and what is known of it.
    Message {
        conversation: ConversationKey,
        seq: Seq,
        id: String,
        sender: String,
        recipient: String,
        sent_at: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivered_at: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_at: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed: Option<Failure>,
        wants_receipt: bool,
        wants_markers: bool,
        readable: bool,
        #[serde(default)]
        queued: bool,
        /// Refused: kept for its sender's status queries only.
        #[serde(default)]
        refused: bool,
        /// Issue 9: the start of its text, kept when `status.preview_chars`
        /// is above 0 (the `status` command's rows).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
    },
    /// A reader's tidemark in a conversation.
    Mark {
        conversation: ConversationKey,
        reader: String,
        seq: Seq,
    },
    /// When a reader's tidemark in a room (or a private one) reached `seq`.
    MarkMoved {
        conversation: ConversationKey,
        reader: String,
        seq: Seq,
        at: Millis,
    },
    Grant {
        contact: String,
        watcher: String,
    },
    Held {
        recipient: String,
        seq: Seq,
        conversation: ConversationKey,
        stanza: String,
    },
    Room {
        room: String,
        created_at: Millis,
        fixed_members: bool,
    },
    Member {
        room: String,
        member: String,
        joined: Seq,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<Seq>,
    },
    RoomMessage {
        room: String,
        seq: Seq,
        id: String,
        stanza_id: String,
        sender: String,
        sent_at: Millis,
        readable: bool,
        stanza: String,
    },
    RoomCreator {
        creator: String,
        room: String,
    },
    ReadReceipts {
        user: String,
        enabled: bool,
    },
    /// Who is in a room now (issue 9): kept so that clients that never
    /// rejoin stay in after a restart or a move to another backend.
    Occupant {
        room: String,
        nick: String,
        user: String,
        sessions: Vec<String>,
        presence: String,
    },
    /// Issue 10: one user's conversation-list entry for a contact, with the
    /// contact's messages still unread.
    InboxEntry {
        user: String,
        contact: String,
        latest: Seq,
        latest_at: Millis,
        latest_by_contact: bool,
        #[serde(default)]
        own_latest: Seq,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unread: Vec<Seq>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missed: Option<Missed>,
    },
    /// Issue 10: a user's latest message in a room (their read position
    /// there is at least that).
    InboxRoomSent {
        user: String,
        room: String,
        seq: Seq,
    },
    /// Issue 11: a customer's conversation with a desk.
    DeskConversation {
        desk: String,
        customer: String,
        #[serde(flatten)]
        conversation: DeskConversation,
    },
    /// Issue 11: an event of a desk conversation's history.
    DeskEvent {
        desk: String,
        customer: String,
        seq: Seq,
        at: Millis,
        by: String,
        /// What happened (`kind` names the record).
        event: DeskEventKind,
    },
    /// Issue 11: the agent who wrote the desk's message `seq`.
    DeskAuthor {
        desk: String,
        customer: String,
        seq: Seq,
        agent: String,
    },
    /// A room's subject (issue 9, XEP-0045 §8.1).
    RoomSubject {
        room: String,
        text: String,
        nick: String,
        /// Who set it; absent: the config file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        setter: Option<String>,
        at: Millis,
        /// The config file's subject when it was last applied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<String>,
    },
}

impl ExportRecord {
    pub fn message(
        conversation: ConversationKey,
        seq: Seq,
        r: MessageRecord,
        read_at: Option<Millis>,
        refused: bool,
        preview: Option<String>,
    ) -> Self {
        ExportRecord::Message {
            conversation,
            seq,
            id: r.id,
            sender: r.sender,
            recipient: r.recipient,
            sent_at: r.sent_at,
            delivered_at: r.delivered_at,
            read_at,
            failed: r.failed,
            wants_receipt: r.wants_receipt,
            wants_markers: r.wants_markers,
            readable: r.readable,
            queued: r.queued,
            refused,
            preview,
        }
    }

    pub fn room(room: String, r: RoomRecord) -> Self {
        ExportRecord::Room {
            room,
            created_at: r.created_at,
            fixed_members: r.fixed_members,
        }
    }

    pub fn member(room: String, member: String, m: Membership) -> Self {
        ExportRecord::Member {
            room,
            member,
            joined: m.joined,
            left: m.left,
        }
    }

    pub fn occupant(room: String, nick: String, o: OccupantRecord) -> Self {
        ExportRecord::Occupant {
            room,
            nick,
            user: o.user,
            sessions: o.sessions,
            presence: o.presence,
        }
    }

    pub fn room_subject(room: String, s: RoomSubject) -> Self {
        ExportRecord::RoomSubject {
            room,
            text: s.text,
            nick: s.nick,
            setter: s.setter,
            at: s.at,
            config: s.config,
        }
    }

    pub fn room_message(room: String, seq: Seq, m: RoomMessage) -> Self {
        ExportRecord::RoomMessage {
            room,
            seq,
            id: m.id,
            stanza_id: m.stanza_id,
            sender: m.sender,
            sent_at: m.sent_at,
            readable: m.readable,
            stanza: String::from_utf8_lossy(&m.stanza).into_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store to import into is not empty; import into a new storage.path")]
    NotEmpty,
    #[error("line {line} of the export: {detail}")]
    Format { line: usize, detail: String },
}

/// Writes everything in `store` to `out`; returns how many records (the
/// header not counted).
pub fn export(store: &dyn Store, out: &mut dyn std::io::Write) -> Result<u64, ExportError> {
    // Everything written so far is in what is exported.
    store.flush()?;
    let header = ExportRecord::Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        next_seq: store.next_seq()?,
    };
    write_line(out, &header)?;
    let mut n = 0;
    store.export_records(&mut |record| {
        write_line(out, &record)?;
        n += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(n)
}

fn write_line(out: &mut dyn std::io::Write, record: &ExportRecord) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Loads an [`export`] into `store`, which must be empty; flushed when done.
/// Returns how many records were loaded.
pub fn import(store: &dyn Store, input: impl std::io::BufRead) -> Result<u64, ExportError> {
    if !store.is_empty()? {
        return Err(ExportError::NotEmpty);
    }
    let mut lines = input.lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    let next_seq = match serde_json::from_str::<ExportRecord>(&header) {
        Ok(ExportRecord::Header {
            format,
            version,
            next_seq,
        }) if format == FORMAT && version == VERSION => next_seq,
        Ok(ExportRecord::Header {
            format, version, ..
        }) => {
            return Err(ExportError::Format {
                line: 1,
                detail: format!(
                    "{format} version {version}; this tidemark reads {FORMAT} version {VERSION}"
                ),
            });
        }
        _ => {
            return Err(ExportError::Format {
                line: 1,
                detail: format!(
                    "expected a header {{\"kind\":\"header\",\"format\":\"{FORMAT}\",\"version\":{VERSION},...}}, got {:?}",
                    header.chars().take(80).collect::<String>()
                ),
            });
        }
    };
    let mut n = 0;
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: ExportRecord =
            serde_json::from_str(&line).map_err(|e| ExportError::Format {
                line: i + 2,
                detail: e.to_string(),
            })?;
        if matches!(record, ExportRecord::Header { .. }) {
            return Err(ExportError::Format {
                line: i + 2,
                detail: "a second header".into(),
            });
        }
        import_record(store, record).map_err(|e| match e {
            StoreError::Rejected(detail) => ExportError::Format {
                line: i + 2,
                detail,
            },
            e => ExportError::Store(e),
        })?;
        n += 1;
    }
    store.continue_after(next_seq)?;
    store.flush()?;
    Ok(n)
}

/// Takes one record of an export into `store`, through its operations: the
/// same for every backend. What the operations cannot say (a tidemark set
/// without a move, a move of the past, an entry of the conversation list
/// with its unread messages) goes through the `import_*` operations each
/// backend has for it. A record that cannot be stored is
/// [`StoreError::Rejected`].
pub fn import_record(store: &dyn Store, record: ExportRecord) -> StoreResult<()> {
    match record {
        ExportRecord::Header { .. } => Err(StoreError::Rejected("a second header".into())),
        ExportRecord::Message {
            conversation,
            seq,
            id,
            sender,
            recipient,
            sent_at,
            delivered_at,
            read_at,
            failed,
            wants_receipt,
            wants_markers,
            readable,
            queued,
            refused,
            preview,
        } => {
            let record = MessageRecord {
                id,
                sender,
                recipient,
                sent_at,
                delivered_at,
                failed,
                wants_receipt,
                wants_markers,
                readable,
                queued,
            };
            if refused {
                // Kept whatever the bound: the export holds what was kept.
                store.put_refused_message(&conversation, seq, &record, usize::MAX)?;
            } else {
                store.put_message(&conversation, seq, &record)?;
            }
            // The read time is the recipient's tidemark passing the message.
            if let Some(at) = read_at {
                store.import_mark_moved(&conversation, &record.recipient, seq, at)?;
            }
            if let Some(text) = preview {
                store.put_preview(&conversation, seq, &text)?;
            }
            Ok(())
        }
        ExportRecord::Mark {
            conversation,
            reader,
            seq,
        } => store.import_mark(&conversation, &reader, seq),
        ExportRecord::MarkMoved {
            conversation,
            reader,
            seq,
            at,
        } => store.import_mark_moved(&conversation, &reader, seq, at),
        ExportRecord::Grant { contact, watcher } => {
            store.set_presence_allowed(&contact, &watcher, true)
        }
        ExportRecord::Held {
            recipient,
            seq,
            conversation,
            stanza,
        } => store.enqueue(&recipient, seq, &conversation, stanza.as_bytes()),
        ExportRecord::Room {
            room,
            created_at,
            fixed_members,
        } => store.put_room(
            &room,
            &RoomRecord {
                created_at,
                fixed_members,
            },
        ),
        ExportRecord::Member {
            room,
            member,
            joined,
            left,
        } => store.set_membership(&room, &member, &Membership { joined, left }),
        ExportRecord::RoomMessage {
            room,
            seq,
            id,
            stanza_id,
            sender,
            sent_at,
            readable,
            stanza,
        } => store.put_room_message(
            &room,
            seq,
            &RoomMessage {
                id,
                stanza_id,
                sender,
                sent_at,
                readable,
                stanza: stanza.into_bytes(),
            },
        ),
        ExportRecord::RoomCreator { creator, room } => store.add_room_creator(&creator, &room),
        ExportRecord::ReadReceipts { user, enabled } => {
            store.set_read_receipts_pref(&user, enabled)
        }
        ExportRecord::Occupant {
            room,
            nick,
            user,
            sessions,
            presence,
        } => store.set_occupant(
            &room,
            &nick,
            Some(&OccupantRecord {
                user,
                sessions,
                presence,
            }),
        ),
        ExportRecord::InboxEntry {
            user,
            contact,
            latest,
            latest_at,
            latest_by_contact,
            own_latest,
            unread,
            missed,
        } => {
            if latest == 0 || unread.iter().any(|s| *s > latest) {
                return Err(StoreError::Rejected(format!(
                    "inbox entry of {user} for {contact}: unread messages after its latest"
                )));
            }
            let mut unread = unread;
            unread.sort_unstable();
            unread.dedup();
            store.import_inbox_entry(
                &user,
                InboxEntry {
                    contact,
                    latest,
                    latest_at,
                    latest_by_contact,
                    own_latest,
                    unread: 0,
                    missed,
                },
                &unread,
            )
        }
        ExportRecord::InboxRoomSent { user, room, seq } => store.inbox_room_sent(&user, &room, seq),
        ExportRecord::DeskConversation {
            desk,
            customer,
            mut conversation,
        } => {
            conversation.customer = customer;
            store.put_desk_conversation(&desk, &conversation)
        }
        ExportRecord::DeskEvent {
            desk,
            customer,
            seq,
            at,
            by,
            event,
        } => store.put_desk_event(
            &desk,
            &customer,
            seq,
            &super::DeskEvent {
                at,
                by,
                kind: event,
            },
        ),
        ExportRecord::DeskAuthor {
            desk,
            customer,
            seq,
            agent,
        } => store.put_desk_author(&desk, &customer, seq, &agent),
        ExportRecord::RoomSubject {
            room,
            text,
            nick,
            setter,
            at,
            config,
        } => store.set_room_subject(
            &room,
            &RoomSubject {
                text,
                nick,
                setter,
                at,
                config,
            },
        ),
    }
}
