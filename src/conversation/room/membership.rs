//! Who belongs to a room: the members the config file fixes, those who made
//! themselves members by joining an open room, and who may create a room.
//! Membership is durable and counts for read status; being in the room now
//! is [`super::occupants`]' job.

use std::collections::BTreeSet;

use minidom::Element;
use tracing::{debug, info};
use xmpp_parsers::jid::Jid;

use super::{RoomStanza, Rooms};
use crate::config::RoomCreators;
use crate::context::Context;
use crate::incoming::Origin;
use crate::metrics::{METRICS, Refusal};
use crate::stanza::{DefinedCondition, ErrorType};
use crate::store::{ConversationKey, Membership, Millis, RoomRecord, StoreError, Write};

/// Declares the rooms of the config file, with their fixed member lists.
pub fn apply_config(cx: &mut Context, rooms: &mut Rooms, now: Millis) -> Result<(), StoreError> {
    let domain = cx.addrs.domain().clone();
    let mut new_rooms = BTreeSet::new();
    for room_cfg in cx.config.rooms.clone() {
        let room = format!("{}@{}", room_cfg.name, domain);
        let created_at = match cx.store.room(&room)? {
            Some(known) => known.created_at,
            None => {
                new_rooms.insert(room.clone());
                now
            }
        };
        cx.write(Write::Room {
            room: room.clone(),
            record: RoomRecord {
                created_at,
                fixed_members: true,
            },
        });
        super::subject::apply_config(cx, &room, room_cfg.subject.as_deref(), now)?;
        // Each member once: the writes of this pass are not read back until
        // it ends.
        let wanted: BTreeSet<String> = room_cfg.members.iter().map(|m| m.to_string()).collect();
        for member in &wanted {
            add_member(cx, rooms, &room, member, now)?;
        }
        for (member, m) in cx.store.memberships(&room)? {
            if m.is_current() && !wanted.contains(&member) {
                let left = cx.store.next_seq()?;
                cx.write(Write::Membership {
                    room: room.clone(),
                    member: member.clone(),
                    membership: Membership {
                        joined: m.joined,
                        left: Some(left),
                    },
                });
                info!(%room, %member, "removed from the room by the config file");
            }
        }
    }
    rooms.forget_frontiers();
    // Counted for the room cap and the metrics, with the config's rooms that
    // these writes are about to add.
    rooms.stored = cx.store.rooms()?.len() + new_rooms.len();
    METRICS.set_rooms(rooms.stored);
    Ok(())
}

/// Makes `user` a member from now on. Their tidemark starts at the join, since
/// they are not a recipient of what came before.
fn add_member(
    cx: &mut Context,
    rooms: &mut Rooms,
    room: &str,
    user: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    if cx
        .store
        .membership(room, user)?
        .is_some_and(|m| m.is_current())
    {
        return Ok(false);
    }
    let joined = cx.store.next_seq()?;
    cx.write(Write::Membership {
        room: room.to_owned(),
        member: user.to_owned(),
        membership: Membership { joined, left: None },
    });
    cx.write(Write::Mark {
        conv: ConversationKey::room(room),
        reader: user.to_owned(),
        seq: joined,
        at: now,
    });
    if let Some(live) = rooms.live.get_mut(room) {
        live.read = None;
    }
    info!(%room, %user, "new member");
    Ok(true)
}

/// Lets the sender of a join into the room as a member: into a room whose
/// members the config file fixes only if they are one, into an open room
/// always, and into a room that does not exist yet by creating it, if they
/// may. `Ok(Ok(created))` once they are a member, `Ok(Err(refusal))` if not.
pub(super) fn admit(
    cx: &mut Context,
    rooms: &mut Rooms,
    at: &RoomStanza,
    own: &str,
    now: Millis,
) -> Result<Result<bool, Element>, StoreError> {
    let room = at.room.as_str();
    let user = at.from.to_bare().to_string();
    let created = match cx.store.room(room)? {
        Some(record) => {
            let member = cx
                .store
                .membership(room, &user)?
                .is_some_and(|m| m.is_current());
            if record.fixed_members && !member {
                // XEP-0045 §7.2.6: members-only room.
                METRICS.refused(Refusal::Room);
                return Ok(Err(at.origin.error(
                    own,
                    ErrorType::Auth,
                    DefinedCondition::RegistrationRequired,
                    "this room's members are set by the administrator, and you are not one of them",
                )));
            }
            false
        }
        None => {
            if let Some(refusal) = may_not_create(cx, at.origin, at.from, own)? {
                METRICS.refused(Refusal::Room);
                return Ok(Err(refusal));
            }
            cx.write(Write::Room {
                room: room.to_owned(),
                record: RoomRecord {
                    created_at: now,
                    fixed_members: false,
                },
            });
            cx.write(Write::RoomCreator {
                creator: user.clone(),
                room: room.to_owned(),
            });
            rooms.stored += 1;
            METRICS.set_rooms(rooms.stored);
            info!(%room, creator = %user, "room created");
            true
        }
    };
    add_member(cx, rooms, room, &user, now)?;
    Ok(Ok(created))
}

/// Whether `from` may create a room by joining it: their domain must be one
/// of `groups.room_creators`, and they must be under
/// `groups.max_rooms_per_creator`. The refusal to send if not.
fn may_not_create(
    cx: &Context,
    origin: &Origin,
    from: &Jid,
    own: &str,
) -> Result<Option<Element>, StoreError> {
    let service = cx.addrs.domain();
    let groups = &cx.config.groups;
    if let RoomCreators::Domains(domains) = &groups.room_creators
        && !groups.room_creators.allows(from.domain().as_str())
    {
        let text = if domains.is_empty() {
            format!(
                "rooms at {service} are not created by joining (groups.room_creators is empty); ask the administrator"
            )
        } else {
            format!(
                "rooms at {service} are created by users of {}; ask a member to invite you",
                domains.join(", ")
            )
        };
        debug!(%from, "room creation refused: domain not allowed");
        return Ok(Some(origin.error(
            own,
            ErrorType::Cancel,
            DefinedCondition::NotAllowed,
            &text,
        )));
    }
    let max = groups.max_rooms_per_creator;
    let creator = from.to_bare();
    if cx.store.rooms_created_by(creator.as_str())? >= max {
        debug!(%from, max, "room creation refused: over the cap");
        return Ok(Some(origin.error(
            own,
            ErrorType::Cancel,
            DefinedCondition::PolicyViolation,
            &format!(
                "you have created {max} rooms at {service}, the most groups.max_rooms_per_creator allows; join an existing room"
            ),
        )));
    }
    Ok(None)
}
