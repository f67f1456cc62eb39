//! What is kept of a contact's available presence for probe answers.

use minidom::Element;

use crate::stanza::{element, ns, with_text};

/// RFC 6121 §4.7.2.1: the `<show/>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Away,
    Chat,
    Dnd,
    Xa,
}

impl Show {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "away" => Some(Show::Away),
            "chat" => Some(Show::Chat),
            "dnd" => Some(Show::Dnd),
            "xa" => Some(Show::Xa),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        }
    }
}

/// An available presence as tidemark keeps it for probe answers: the RFC 6121
/// availability fields, nothing else: live presence goes on whole, and a
/// probe answer needs only whether and how the contact is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compact {
    show: Option<Show>,
    status: Option<Box<str>>,
    priority: i8,
}

impl Compact {
    pub fn of(p: &Element) -> Self {
        let child = |name: &str| p.children().find(|c| c.name() == name);
        Compact {
            show: child("show").and_then(|s| Show::parse(&s.text())),
            status: child("status").map(|s| s.text().into_boxed_str()),
            priority: child("priority")
                .and_then(|s| s.text().trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// The presence as sent on: `from` and `to` set, and only the fields
    /// kept.
    pub fn to_element(&self, from: &str, to: &str) -> Element {
        let mut p = element("presence", ns::COMPONENT, &[("from", from), ("to", to)]);
        if let Some(show) = self.show {
            p.append_child(with_text(
                Element::bare("show", ns::COMPONENT),
                show.as_str(),
            ));
        }
        if let Some(status) = &self.status {
            p.append_child(with_text(
                Element::bare("status", ns::COMPONENT),
                status.as_ref(),
            ));
        }
        if self.priority != 0 {
            p.append_child(with_text(
                Element::bare("priority", ns::COMPONENT),
                self.priority.to_string(),
            ));
        }
        p
    }
}
