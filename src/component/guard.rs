//! The last line of defence: a panic while handling one stanza costs that
//! stanza, not the service. Every panic found is still a bug to fix; this
//! only keeps other users' messages flowing meanwhile.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use minidom::Element;
use tracing::error;

use crate::effects::Effects;
use crate::metrics::{METRICS, Refusal};
use crate::stanza::{DefinedCondition, ErrorType, error_reply};
use crate::store::Store;

/// Runs `handle` for `stanza`; if it panics, logs and counts it and answers
/// the sender with `internal-server-error` (never for errors, results or
/// presence, which get no error answers).
pub(crate) fn guarded(
    stanza: &Element,
    service: &str,
    handle: impl FnOnce() -> Effects,
) -> Effects {
    // The handler's state may be half-updated after a panic; the store is
    // not: a stanza's writes are applied only from the effects it returns.
    match catch_unwind(AssertUnwindSafe(handle)) {
        Ok(out) => out,
        Err(payload) => {
            error!(
                id = stanza.attr("id"),
                kind = stanza.name(),
                from = stanza.attr("from"),
                to = stanza.attr("to"),
                panic = panic_text(payload.as_ref()),
                "handling a stanza panicked; it was not processed"
            );
            METRICS.refused(Refusal::Panic);
            Effects::sending(internal_error(stanza, service).into_iter().collect())
        }
    }
}

/// Applies a stanza's `effects` to `store` and gives the stanzas to send;
/// if the store refuses the writes, the sender is told the stanza was not
/// processed and nothing it would have caused goes out.
pub(crate) fn applied(
    stanza: &Element,
    service: &str,
    store: &dyn Store,
    effects: Effects,
) -> Vec<Element> {
    match effects.apply(store) {
        Ok(send) => send,
        Err(e) => {
            error!(
                id = stanza.attr("id"),
                kind = stanza.name(),
                from = stanza.attr("from"),
                error = %e,
                "the store refused a stanza's writes; it was not processed"
            );
            internal_error(stanza, service).into_iter().collect()
        }
    }
}

fn internal_error(stanza: &Element, service: &str) -> Option<Element> {
    not_processed(
        stanza,
        service,
        "tidemark failed on this stanza; it was not processed",
    )
}

/// An `internal-server-error` of type `wait` saying `why`, for a message
/// someone wrote or a request that was not processed. None for errors,
/// results and presence, which get no error answers, nor for messages
/// without a body (receipts, markers, chat states): their sender's client
/// sent them on its own and cannot send them again, so an error would only
/// show its user a failure of something they never did.
pub(crate) fn not_processed(stanza: &Element, service: &str, why: &str) -> Option<Element> {
    let told = match stanza.name() {
        "message" => {
            stanza.attr("type") != Some("error") && stanza.children().any(|c| c.name() == "body")
        }
        "iq" => matches!(stanza.attr("type"), Some("get" | "set")),
        _ => false,
    };
    if !told || stanza.attr("from").is_none() {
        return None;
    }
    let from = stanza.attr("to").unwrap_or(service);
    Some(error_reply(
        stanza,
        from,
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
        why,
    ))
}

pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::{element, ns};

    fn bare(name: &str, type_: &str) -> Element {
        element(
            name,
            ns::COMPONENT,
            &[
                ("type", type_),
                ("id", "p1"),
                ("from", "alice@localhost/a"),
                ("to", "bob\\40localhost@chat.localhost"),
            ],
        )
    }

    /// A message someone wrote (with a body), or any other stanza.
    fn stanza(name: &str, type_: &str) -> Element {
        let mut el = bare(name, type_);
        if name == "message" {
            el.append_child(Element::builder("body", ns::COMPONENT).append("hi").build());
        }
        el
    }

    #[test]
    fn a_panicking_handler_gives_internal_server_error_and_is_counted() {
        let before = METRICS.refusals(Refusal::Panic);
        let out = guarded(&stanza("message", "chat"), "chat.localhost", || {
            panic!("boom")
        })
        .send;
        // Other tests count panics too, at the same time.
        assert!(METRICS.refusals(Refusal::Panic) > before);
        assert_eq!(out.len(), 1);
        let reply = &out[0];
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("p1"));
        assert_eq!(reply.attr("to"), Some("alice@localhost/a"));
        assert_eq!(reply.attr("from"), Some("bob\\40localhost@chat.localhost"));
        let err = reply.get_child("error", ns::COMPONENT).unwrap();
        assert_eq!(err.attr("type"), Some("wait"));
        assert!(err.has_child("internal-server-error", ns::STANZAS));
    }

    #[test]
    fn errors_results_and_presence_that_panic_get_no_answer() {
        for (name, type_) in [
            ("message", "error"),
            ("iq", "result"),
            ("presence", "available"),
        ] {
            let out = guarded(&stanza(name, type_), "chat.localhost", || panic!("boom")).send;
            assert!(out.is_empty(), "{name} {type_}");
        }
    }

    #[test]
    fn receipts_markers_and_chat_states_that_panic_get_no_answer() {
        for payload in [
            ("received", ns::RECEIPTS),
            ("displayed", ns::CHAT_MARKERS),
            ("active", "http://jabber.org/protocol/chatstates"),
        ] {
            let mut ack = bare("message", "chat");
            ack.append_child(Element::bare(payload.0, payload.1));
            let out = guarded(&ack, "chat.localhost", || panic!("boom")).send;
            assert!(out.is_empty(), "{}", payload.0);
        }
        let q = guarded(&stanza("iq", "set"), "chat.localhost", || panic!("boom")).send;
        assert_eq!(q.len(), 1, "a request is answered");
    }

    #[test]
    fn a_handler_that_returns_is_passed_through() {
        let answer = stanza("message", "chat");
        let out = guarded(&stanza("iq", "get"), "c", || {
            Effects::sending(vec![answer.clone()])
        });
        assert_eq!(out.send, vec![answer]);
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let p = catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "static");
        let p = catch_unwind(|| panic!("formatted {}", 1)).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "formatted 1");
    }
}
