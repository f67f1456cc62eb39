//! The router: one entry point per incoming stanza, a `match` on its kind, and
//! the [`Effects`] for the shell. No sockets and no clock here; the
//! connection loop hands in stanzas and the time, flushes the store, and
//! then sends what the effects say.

use std::sync::Arc;

use minidom::Element;
use tracing::{debug, info_span, warn};
use xmpp_parsers::jid::Jid;

use crate::config::Config;
use crate::contact_query::{self, Relayed};
use crate::context::Context;
use crate::conversation::direct::{self, Waiting};
use crate::conversation::room::{self, Rooms};
use crate::desk::Desks;
use crate::effects::Effects;
use crate::inbox::{Inbox, Push};
use crate::incoming::{Incoming, classify_head};
use crate::metrics::{METRICS, Refusal};
use crate::presence::{self, PresenceBook};
use crate::query;
use crate::rate_limit::RateLimiter;
use crate::stanza::{DefinedCondition, ErrorType, Head, error_reply};
use crate::store::{Millis, Store, StoreError};

pub struct Tidemark {
    cx: Context,
    presence: PresenceBook,
    rooms: Rooms,
    /// Queries relayed to contacts, waiting for their answers.
    relayed: Relayed,
    /// Messages to contacts whose presence is not known yet after a
    /// (re)connect.
    waiting: Waiting,
    rate: RateLimiter,
    /// Issue 10: the conversation list's subscribers.
    inbox: Inbox,
    /// Issue 11: the team desks.
    desks: Desks,
    /// The server this component belongs to (`localhost` for
    /// `chat.localhost`): its own stanzas are never rate limited.
    server_domain: String,
}

impl Tidemark {
    /// Sets up the service over `store` at `now`. The config file's rooms
    /// come back as writes, like a stanza's, for the shell to apply before
    /// the first stanza.
    pub fn start(
        config: Config,
        store: Arc<dyn Store>,
        now: Millis,
    ) -> Result<(Self, Effects), StoreError> {
        let rate = RateLimiter::new(config.limits.rate_per_second, config.limits.rate_burst);
        let server_domain = crate::config::own_server_domain(&config.component.jid);
        let desks = Desks::start(
            &*store,
            config.component.jid.domain().as_str(),
            config.limits.desk_openings_per_domain_per_minute,
        )?;
        let mut tm = Self {
            cx: Context::new(config, store),
            presence: PresenceBook::default(),
            rooms: Rooms::default(),
            relayed: Relayed::default(),
            waiting: Waiting::default(),
            rate,
            inbox: Inbox::default(),
            desks,
            server_domain,
        };
        room::apply_config(&mut tm.cx, &mut tm.rooms, now)?;
        // Who was in which room: kept in the store, so clients that never
        // rejoin stay in across a restart (or kill -9).
        tm.rooms.restore(&*tm.cx.store)?;
        let writes = tm.cx.take_writes();
        Ok((
            tm,
            Effects {
                writes,
                send: vec![],
                pushes: vec![],
            },
        ))
    }

    /// [`Tidemark::start`] with its writes applied: the set-up every shell
    /// makes, and the only writes not returned to a shell.
    pub fn new(config: Config, store: Arc<dyn Store>, now: Millis) -> Result<Self, StoreError> {
        let (tm, setup) = Self::start(config, store, now)?;
        setup.apply(&*tm.cx.store)?;
        Ok(tm)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.cx.store
    }

    pub fn config(&self) -> &Config {
        &self.cx.config
    }

    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    pub fn presence(&self) -> &PresenceBook {
        &self.presence
    }

    /// Messages to contacts whose presence is not known yet.
    pub fn waiting(&self) -> &Waiting {
        &self.waiting
    }

    /// Handles one stanza from the server at `now`; returns what the shell
    /// is to do about it.
    pub fn handle(&mut self, stanza: &Element, now: Millis) -> Effects {
        // Left over only by a stanza that panicked: none of it is written.
        drop(self.cx.take_writes());
        let send = self.answer(stanza, now);
        let pushes = self.follow_writes();
        Effects {
            writes: self.cx.take_writes(),
            send,
            pushes,
        }
    }

    /// The conversation list follows what the stanza (or tick) wrote.
    fn follow_writes(&mut self) -> Vec<Push> {
        match self.inbox.after_stanza(&mut self.cx) {
            Ok(pushes) => pushes,
            Err(e) => {
                warn!(error = %e, "storage failed; no conversation list updates pushed");
                vec![]
            }
        }
    }

    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    fn answer(&mut self, stanza: &Element, now: Millis) -> Vec<Element> {
        let head = Head::of(stanza);
        let span = info_span!(
            "stanza",
            kind = stanza.name(),
            id = head.id.unwrap_or(""),
            from = head.from.unwrap_or(""),
            to = head.to.unwrap_or(""),
        );
        let _enter = span.enter();
        if !self.within_rate(stanza, &head, now) {
            return self.over_rate(stanza);
        }
        match self.dispatch(stanza, &head, now) {
            Ok(out) => out,
            Err(e) => {
                // Nothing of a stanza that failed halfway is written.
                drop(self.cx.take_writes());
                warn!(error = %e, "storage failed; stanza not processed");
                match stanza.attr("type") {
                    Some("error") | Some("result") => vec![],
                    _ if stanza.name() == "presence" => vec![],
                    _ => vec![error_reply(
                        stanza,
                        self.own_address(stanza),
                        ErrorType::Wait,
                        DefinedCondition::InternalServerError,
                        "the message status store failed; try again later",
                    )],
                }
            }
        }
    }

    /// The per-sender token bucket, keyed by the `from` attribute's bare
    /// part as written: a sender who varies its spelling only gets the
    /// buckets new JIDs would get anyway, and no parsing is paid twice.
    fn within_rate(&mut self, stanza: &Element, head: &Head, now: Millis) -> bool {
        let Some(from) = head.from else {
            return true;
        };
        let bare = from.split_once('/').map_or(from, |(b, _)| b);
        // The server's own stanzas (answers to our pings, its notices) and
        // answers to our own requests are never starved by a flood.
        if bare.eq_ignore_ascii_case(&self.server_domain) {
            return true;
        }
        if stanza.name() == "iq"
            && matches!(head.type_, Some("result") | Some("error"))
            && head.to == Some(self.cx.addrs.domain().as_str())
        {
            return true;
        }
        self.rate.allow(bare, now)
    }

    fn over_rate(&self, stanza: &Element) -> Vec<Element> {
        METRICS.refused(Refusal::RateLimit);
        let silent = stanza.name() == "presence"
            || matches!(stanza.attr("type"), Some("error") | Some("result"));
        if silent {
            debug!("over the rate limit; dropped");
            return vec![];
        }
        // debug, not warn: a flood would otherwise fill the log instead.
        debug!("over the rate limit; refused");
        let limits = &self.cx.config.limits;
        vec![error_reply(
            stanza,
            self.own_address(stanza),
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            &format!(
                "you are sending faster than limits.rate_per_second ({} a second, bursts of {}); this stanza was not processed, slow down and try again",
                limits.rate_per_second, limits.rate_burst
            ),
        )]
    }

    /// The address an error about `stanza` comes from: its `to` if that is
    /// a JID, else the service.
    fn own_address<'a>(&'a self, stanza: &'a Element) -> &'a str {
        stanza
            .attr("to")
            .filter(|to| Jid::new(to).is_ok())
            .unwrap_or(self.cx.addrs.domain().as_str())
    }

    fn dispatch(
        &mut self,
        stanza: &Element,
        head: &Head,
        now: Millis,
    ) -> Result<Vec<Element>, StoreError> {
        let cx = &mut self.cx;
        match classify_head(stanza, head, &cx.addrs) {
            Incoming::Room {
                from,
                origin,
                room: room_jid,
                request,
            } => room::handle(cx, &mut self.rooms, &origin, &from, &room_jid, request, now),
            Incoming::ServiceIq {
                from,
                origin,
                request,
            } => {
                if let Some(out) = self.desks.service_iq(cx, &origin, &from, &request, now)? {
                    return Ok(out);
                }
                Ok(vec![query::answer(
                    cx,
                    &mut self.rooms,
                    &mut self.inbox,
                    &origin,
                    &from,
                    request,
                    now,
                )?])
            }
            Incoming::Desk { target, inner } => self.desks.handle(cx, target, *inner, now),
            Incoming::ContactIq { reply } => Ok(vec![reply]),
            Incoming::ContactQuery { route, origin, iq } => {
                contact_query::on_query(cx, &mut self.relayed, &route, &origin, iq, now)
            }
            Incoming::ContactAnswer { route, iq } => {
                Ok(contact_query::on_answer(&mut self.relayed, &route, iq))
            }
            Incoming::IqResponse { from, iq } => {
                if !cx.clients.on_answer(&from, iq) {
                    debug!("answer to no question of ours ignored");
                }
                Ok(vec![])
            }
            Incoming::Chat(chat) => {
                direct::on_chat(cx, &self.presence, &mut self.waiting, &chat, now)
            }
            Incoming::Ack { route, kind, id } => direct::on_ack(cx, &route, kind, &id, now),
            Incoming::Bounce(bounce) => direct::on_bounce(cx, &bounce, now),
            Incoming::Passthrough { route, message } => {
                direct::on_passthrough(cx, &self.presence, &route, message)
            }
            Incoming::Subscription { route, kind, id } => {
                presence::on_subscription(cx, &route, kind, id.as_deref())
            }
            Incoming::Presence {
                route,
                presence,
                available,
            } => {
                if available.is_none() {
                    // The session went away (or hid from this contact):
                    // it gets no more updates of its conversation list.
                    self.inbox.unsubscribe(&route.from);
                }
                let answered = presence::on_presence(
                    cx,
                    &mut self.presence,
                    &route,
                    presence,
                    available,
                    now,
                )?;
                let mut out = answered.out;
                if answered.now_known {
                    out.extend(self.release_waiting(&route.from.to_bare().to_string(), now)?);
                }
                Ok(out)
            }
            Incoming::Probe(route) => presence::on_probe(cx, &self.presence, &route, now),
            Incoming::PresenceError(route) => {
                if presence::on_presence_error(&mut self.presence, &route) {
                    self.release_waiting(&route.from.to_bare().to_string(), now)
                } else {
                    Ok(vec![])
                }
            }
            Incoming::SessionGone { from } => {
                self.inbox.unsubscribe(&from);
                Ok(vec![])
            }
            Incoming::Ignored(why) => {
                debug!(why, "ignored");
                Ok(vec![])
            }
            Incoming::Invalid { reason, reply } => {
                METRICS.refused(Refusal::Malformed);
                warn!(%reason, "invalid stanza dropped");
                Ok(reply.into_iter().collect())
            }
        }
    }

    /// `contact`'s presence is known now: what waited for it goes on.
    fn release_waiting(&mut self, contact: &str, now: Millis) -> Result<Vec<Element>, StoreError> {
        direct::release_waiting(
            &mut self.cx,
            &self.presence,
            &mut self.waiting,
            contact,
            now,
        )
    }

    /// Called about once a second by the connection loop, with the time:
    /// whatever waits on a deadline (presence probes) happens here.
    pub fn tick(&mut self, now: Millis) -> Result<Effects, StoreError> {
        drop(self.cx.take_writes());
        self.rate.sweep(now);
        self.relayed.expire(now);
        self.cx.clients.expire(now);
        let mut out = Vec::new();
        if presence::on_tick(&mut self.presence, now) {
            for contact in self.waiting.contacts() {
                match self.release_waiting(&contact, now) {
                    Ok(answers) => out.extend(answers),
                    Err(e) => {
                        drop(self.cx.take_writes());
                        return Err(e);
                    }
                }
            }
        }
        match self.desks.tick(&mut self.cx, now) {
            Ok(shown) => out.extend(shown),
            Err(e) => {
                drop(self.cx.take_writes());
                return Err(e);
            }
        }
        let pushes = self.follow_writes();
        Ok(Effects {
            writes: self.cx.take_writes(),
            send: out,
            pushes,
        })
    }

    /// A graceful stop that will not come back: every room occupant is told
    /// the service shuts down (XEP-0045 status 332) and occupancy is
    /// cleared. The shell applies and flushes the writes, then sends the
    /// notices before it closes the stream.
    pub fn shutdown(&mut self) -> Effects {
        drop(self.cx.take_writes());
        let send = room::shutdown(&mut self.cx, &mut self.rooms);
        Effects {
            writes: self.cx.take_writes(),
            send,
            pushes: vec![],
        }
    }

    /// Called after every (re)connect: what tidemark knew of presence is
    /// stale, so it asks again.
    pub fn on_connected(&mut self, now: Millis) -> Result<Effects, StoreError> {
        drop(self.cx.take_writes());
        let send =
            presence::on_connected(&mut self.cx, &mut self.presence, now).and_then(|mut out| {
                out.extend(self.desks.on_connected(&mut self.cx, now)?);
                Ok(out)
            });
        let pushes = if send.is_ok() {
            self.follow_writes()
        } else {
            vec![]
        };
        let writes = self.cx.take_writes();
        Ok(Effects {
            writes,
            send: send?,
            pushes,
        })
    }
}
