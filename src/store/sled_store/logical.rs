//! The sled backend as logical records, for export (the import is
//! `export::import_record`, over the store's operations).

use super::staged::T;
use super::{SledStore, decode, decode_seq};
use crate::store::export::{ExportError, ExportRecord};
use crate::store::keys::{self, ConversationKey};
use crate::store::{
    Membership, OccupantRecord, RoomMessage, RoomRecord, RoomSubject, StoreError, StoreResult,
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
}
