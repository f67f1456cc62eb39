//! Issue 11: what the store keeps of team desks (xep/desk.md): each
//! conversation's state and assignee, the events of its history, which agent
//! wrote each of the desk's messages, and the counts of each view, kept as
//! conversations change.
//!
//! The messages themselves are 1:1 statuses between the customer and the
//! desk's address, so receipts, markers, the status query and the unread
//! counts of the conversation list work for them unchanged.

use serde::{Deserialize, Serialize};

use super::{Millis, Seq};

/// Where a desk conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DeskState {
    #[default]
    Open,
    Pending,
    /// Back by itself at `until`, or when the customer writes.
    Snoozed {
        until: Millis,
    },
    Done,
}

impl DeskState {
    pub fn name(self) -> &'static str {
        match self {
            DeskState::Open => "open",
            DeskState::Pending => "pending",
            DeskState::Snoozed { .. } => "snoozed",
            DeskState::Done => "done",
        }
    }
}

/// One customer's conversation with a desk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskConversation {
    /// The customer's bare JID (the key; not stored twice).
    #[serde(skip)]
    pub customer: String,
    pub state: DeskState,
    /// An agent's bare JID.
    pub assignee: Option<String>,
    /// The newest message either way, and when.
    pub latest: Seq,
    pub latest_at: Millis,
    /// The customer's newest message, 0 for none.
    pub customer_latest: Seq,
    /// How far the desk has read (any agent's displayed marker, or an
    /// agent's answer).
    pub read_upto: Seq,
    pub opened_at: Millis,
}

impl DeskConversation {
    /// Whether a message of the customer waits for an agent to read it.
    pub fn has_unread(&self) -> bool {
        self.customer_latest > self.read_upto
    }
}

/// A view of a desk (xep/desk.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeskView {
    /// Assigned to this agent, not done.
    Mine(String),
    Unassigned,
    All,
    Done,
}

impl DeskView {
    pub fn name(&self) -> &'static str {
        match self {
            DeskView::Mine(_) => "mine",
            DeskView::Unassigned => "unassigned",
            DeskView::All => "all",
            DeskView::Done => "done",
        }
    }

    /// Whether `c` is in the view.
    pub fn holds(&self, c: &DeskConversation) -> bool {
        let done = c.state == DeskState::Done;
        match self {
            DeskView::Mine(agent) => !done && c.assignee.as_deref() == Some(agent),
            DeskView::Unassigned => !done && c.assignee.is_none(),
            DeskView::All => !done,
            DeskView::Done => done,
        }
    }
}

/// How many conversations a view holds, and how many of them have unread
/// messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewCount {
    pub conversations: u64,
    pub unread: u64,
}

/// The counts an agent sees, one per view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeskCounts {
    pub mine: ViewCount,
    pub unassigned: ViewCount,
    pub all: ViewCount,
    pub done: ViewCount,
}

/// What happened to a conversation (xep/desk.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeskEventKind {
    Opened,
    Assigned { to: String },
    Unassigned,
    Done,
    Pending,
    Snoozed { until: Millis },
    Unsnoozed,
    Reopened,
}

impl DeskEventKind {
    pub fn name(&self) -> &'static str {
        match self {
            DeskEventKind::Opened => "opened",
            DeskEventKind::Assigned { .. } => "assigned",
            DeskEventKind::Unassigned => "unassigned",
            DeskEventKind::Done => "done",
            DeskEventKind::Pending => "pending",
            DeskEventKind::Snoozed { .. } => "snoozed",
            DeskEventKind::Unsnoozed => "unsnoozed",
            DeskEventKind::Reopened => "reopened",
        }
    }
}

/// Who made an event happen that is no agent.
pub const BY_AUTOMATION: &str = "automation";
pub const BY_CUSTOMER: &str = "customer";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskEvent {
    pub at: Millis,
    /// An agent's bare JID, [`BY_AUTOMATION`] or [`BY_CUSTOMER`].
    pub by: String,
    pub kind: DeskEventKind,
}
