//! The sled backend as logical records, for export and import.

use super::staged::T;
use super::{SledStore, decode, decode_seq};
use crate::store::export::{ExportError, ExportRecord};
use crate::store::keys::{self, ConversationKey};
use crate::store::{
    InboxEntry, Membership, MessageRecord, OccupantRecord, RoomMessage, RoomRecord, RoomSubject,
    Store, StoreError, StoreResult,
};

fn corrupt(what: &'static str, key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: format!("{key:?}"),
    }
}

/// `a NUL b` as two strings.
fn split_pair(key: &[u8], what: &'static str) -> StoreResult<(String, String)> {
    keys::split_grant(key).ok_or_else(|| corrupt(what, key))
}

impl SledStore {
    pub(super) fn export_all(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        self.log.for_each_message(|m| {
            each(ExportRecord::message(
                m.conv, m.seq, m.record, m.read_at, m.refused, m.preview,
            ))
        })?;
        self.log.for_each_mark(|conversation, side, seq| {
            let reader = conversation.party(side).unwrap_or_default().to_owned();
            each(ExportRecord::Mark {
                conversation,
                reader,
                seq,
            })
        })?;
        for entry in self.staged.tree(T::Marks).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (conversation, reader) =
                keys::split_mark(&k).ok_or_else(|| corrupt("tidemark key", &k))?;
            each(ExportRecord::Mark {
                conversation,
                reader,
                seq: decode_seq(&v, "tidemark")?,
            })?;
        }
        for entry in self.staged.tree(T::MarkLog).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (prefix, seq) =
                keys::split_seq_suffix(&k).ok_or_else(|| corrupt("tidemark log key", &k))?;
            let (conversation, reader) =
                keys::split_mark(prefix).ok_or_else(|| corrupt("tidemark log key", &k))?;
            each(ExportRecord::MarkMoved {
                conversation,
                reader,
                seq,
                at: decode_seq(&v, "tidemark log time")?,
            })?;
        }
        for entry in self.staged.tree(T::Grants).iter() {
            let (k, _) = entry.map_err(StoreError::from)?;
            let (contact, watcher) = split_pair(&k, "presence grant key")?;
            each(ExportRecord::Grant { contact, watcher })?;
        }
        for entry in self.staged.tree(T::Queue).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (recipient, seq) =
                keys::split_seq_suffix(&k).ok_or_else(|| corrupt("held stanza key", &k))?;
            let (conv, stanza): (Vec<u8>, Vec<u8>) = decode(&v, "held stanza")?;
            each(ExportRecord::Held {
                recipient: String::from_utf8_lossy(recipient).into_owned(),
                seq,
                conversation: ConversationKey::decode(&conv)
                    .ok_or_else(|| corrupt("held stanza's conversation", &conv))?,
                stanza: String::from_utf8_lossy(&stanza).into_owned(),
            })?;
        }
        for entry in self.staged.tree(T::Rooms).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let record: RoomRecord = decode(&v, "room")?;
            each(ExportRecord::room(
                String::from_utf8_lossy(&k).into_owned(),
                record,
            ))?;
        }
        for entry in self.staged.tree(T::RoomMembers).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (room, member) = split_pair(&k, "membership key")?;
            let m: Membership = decode(&v, "membership")?;
            each(ExportRecord::member(room, member, m))?;
        }
        for entry in self.staged.tree(T::RoomMessages).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (room, seq) =
                keys::split_seq_suffix(&k).ok_or_else(|| corrupt("room message key", &k))?;
            let m: RoomMessage = decode(&v, "room message")?;
            each(ExportRecord::room_message(
                String::from_utf8_lossy(room).into_owned(),
                seq,
                m,
            ))?;
        }
        for entry in self.staged.tree(T::RoomCreators).iter() {
            let (k, _) = entry.map_err(StoreError::from)?;
            let (creator, room) = split_pair(&k, "room creator key")?;
            each(ExportRecord::RoomCreator { creator, room })?;
        }
        for entry in self.staged.tree(T::Prefs).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            each(ExportRecord::ReadReceipts {
                user: String::from_utf8_lossy(&k).into_owned(),
                enabled: v.first() == Some(&1),
            })?;
        }
        // Room occupancy (issue 9).
        for entry in self.staged.tree(T::Occupants).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let (room, nick) = split_pair(&k, "occupant key")?;
            let o: OccupantRecord = decode(&v, "occupant")?;
            each(ExportRecord::occupant(room, nick, o))?;
        }
        for entry in self.staged.tree(T::RoomSubjects).iter() {
            let (k, v) = entry.map_err(StoreError::from)?;
            let subject: RoomSubject = decode(&v, "room subject")?;
            each(ExportRecord::room_subject(
                String::from_utf8_lossy(&k).into_owned(),
                subject,
            ))?;
        }
        for (desk, conversation) in self.all_desk_convs()? {
            each(ExportRecord::DeskConversation {
                desk,
                customer: conversation.customer.clone(),
                conversation,
            })?;
        }
        for (desk, customer, seq, v) in self.all_desk_seq_records(true)? {
            let event: crate::store::DeskEvent = decode(&v, "desk event")?;
            each(ExportRecord::DeskEvent {
                desk,
                customer,
                seq,
                at: event.at,
                by: event.by,
                event: event.kind,
            })?;
        }
        for (desk, customer, seq, v) in self.all_desk_seq_records(false)? {
            each(ExportRecord::DeskAuthor {
                desk,
                customer,
                seq,
                agent: String::from_utf8_lossy(&v).into_owned(),
            })?;
        }
        self.export_inbox(each)
    }

    pub(super) fn import_one(&self, record: ExportRecord) -> StoreResult<()> {
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
                    self.put_refused_message(&conversation, seq, &record, usize::MAX)?;
                } else {
                    self.log.put(&conversation, seq, &record, false)?;
                }
                if let Some(at) = read_at {
                    self.log.set_read(&conversation, seq, at)?;
                }
                if let Some(text) = preview {
                    self.log.set_preview(&conversation, seq, &text)?;
                }
                Ok(())
            }
            ExportRecord::Mark {
                conversation,
                reader,
                seq,
            } => match conversation.side_of(&reader) {
                Some(side) => self.log.set_mark(&conversation, side, seq),
                None => {
                    self.staged.insert(
                        T::Marks,
                        keys::mark(&conversation, &reader),
                        seq.to_be_bytes(),
                    );
                    Ok(())
                }
            },
            ExportRecord::MarkMoved {
                conversation,
                reader,
                seq,
                at,
            } => {
                self.staged.insert(
                    T::MarkLog,
                    keys::mark_log(&conversation, &reader, seq),
                    at.to_be_bytes(),
                );
                Ok(())
            }
            ExportRecord::Grant { contact, watcher } => {
                self.set_presence_allowed(&contact, &watcher, true)
            }
            ExportRecord::Held {
                recipient,
                seq,
                conversation,
                stanza,
            } => self.enqueue(&recipient, seq, &conversation, stanza.as_bytes()),
            ExportRecord::Room {
                room,
                created_at,
                fixed_members,
            } => self.put_room(
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
            } => self.set_membership(&room, &member, &Membership { joined, left }),
            ExportRecord::RoomMessage {
                room,
                seq,
                id,
                stanza_id,
                sender,
                sent_at,
                readable,
                stanza,
            } => self.put_room_message(
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
            ExportRecord::RoomCreator { creator, room } => self.add_room_creator(&creator, &room),
            ExportRecord::ReadReceipts { user, enabled } => {
                self.set_read_receipts_pref(&user, enabled)
            }
            ExportRecord::Occupant {
                room,
                nick,
                user,
                sessions,
                presence,
            } => self.set_occupant(
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
            } => self.import_inbox_entry(
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
            ),
            ExportRecord::InboxRoomSent { user, room, seq } => {
                self.inbox_room_sent(&user, &room, seq)
            }
            ExportRecord::DeskConversation {
                desk,
                customer,
                mut conversation,
            } => {
                conversation.customer = customer;
                self.put_desk_conversation(&desk, &conversation)
            }
            ExportRecord::DeskEvent {
                desk,
                customer,
                seq,
                at,
                by,
                event,
            } => self.put_desk_event(
                &desk,
                &customer,
                seq,
                &crate::store::DeskEvent {
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
            } => self.put_desk_author(&desk, &customer, seq, &agent),
            ExportRecord::RoomSubject {
                room,
                text,
                nick,
                setter,
                at,
                config,
            } => self.set_room_subject(
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
}
