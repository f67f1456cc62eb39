//! Counters for the metrics endpoint (`[metrics] listen`), in Prometheus'
//! text format. Process-wide atomics: counting costs one relaxed add, so the
//! hot path pays nothing worth measuring whether or not anyone scrapes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The top-level element of a stanza, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
    Other,
}

impl StanzaKind {
    const ALL: [StanzaKind; 4] = [
        StanzaKind::Message,
        StanzaKind::Presence,
        StanzaKind::Iq,
        StanzaKind::Other,
    ];

    pub fn of(name: &str) -> Self {
        match name {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => StanzaKind::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
            StanzaKind::Other => "other",
        }
    }
}

/// Why tidemark refused a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The sender is over `limits.rate_per_second`.
    RateLimit,
    /// Over a `limits.*` size: stanza, depth, attribute, name, body.
    Size,
    /// The presence gate: not authorised, offline, or content held back.
    Gate,
    /// Not well-formed or not valid XMPP.
    Malformed,
    /// A room refused the join or the message (not a member, creation cap).
    Room,
    /// A handler panicked; answered with internal-server-error.
    Panic,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::RateLimit,
        Refusal::Size,
        Refusal::Gate,
        Refusal::Malformed,
        Refusal::Room,
        Refusal::Panic,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::RateLimit => "rate_limit",
            Refusal::Size => "size",
            Refusal::Gate => "gate",
            Refusal::Malformed => "malformed",
            Refusal::Room => "room",
            Refusal::Panic => "panic",
        }
    }
}

/// Upper bounds of the flush-latency histogram, in seconds.
const FLUSH_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

pub struct Metrics {
    stanzas_in: [AtomicU64; 4],
    stanzas_out: [AtomicU64; 4],
    refusals: [AtomicU64; 6],
    statuses_recorded: AtomicU64,
    reconnects: AtomicU64,
    flush_buckets: [AtomicU64; 10],
    flush_count: AtomicU64,
    flush_micros_sum: AtomicU64,
    rooms: AtomicU64,
    tracked_presences: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

pub static METRICS: Metrics = Metrics {
    stanzas_in: [ZERO; 4],
    stanzas_out: [ZERO; 4],
    refusals: [ZERO; 6],
    statuses_recorded: ZERO,
    reconnects: ZERO,
    flush_buckets: [ZERO; 10],
    flush_count: ZERO,
    flush_micros_sum: ZERO,
    rooms: ZERO,
    tracked_presences: ZERO,
};

fn index<T: PartialEq>(all: &[T], item: T) -> usize {
    all.iter().position(|x| *x == item).unwrap_or(0)
}

impl Metrics {
    pub fn stanza_in(&self, kind: StanzaKind) {
        self.stanzas_in[index(&StanzaKind::ALL, kind)].fetch_add(1, Relaxed);
    }

    pub fn stanza_out(&self, kind: StanzaKind) {
        self.stanzas_out[index(&StanzaKind::ALL, kind)].fetch_add(1, Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals[index(&Refusal::ALL, why)].fetch_add(1, Relaxed);
    }

    pub fn status_recorded(&self) {
        self.statuses_recorded.fetch_add(1, Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub fn flushed(&self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.flush_buckets.iter().zip(FLUSH_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.flush_count.fetch_add(1, Relaxed);
        self.flush_micros_sum
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn set_rooms(&self, n: usize) {
        self.rooms.store(n as u64, Relaxed);
    }

    pub fn set_tracked_presences(&self, n: usize) {
        self.tracked_presences.store(n as u64, Relaxed);
    }

    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refusals[index(&Refusal::ALL, why)].load(Relaxed)
    }

    /// Everything, in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let _ = writeln!(
            s,
            "# HELP tidemark_stanzas_in_total Stanzas read from the server, by element.\n# TYPE tidemark_stanzas_in_total counter"
        );
        for k in StanzaKind::ALL {
            let v = self.stanzas_in[index(&StanzaKind::ALL, k)].load(Relaxed);
            let _ = writeln!(s, "tidemark_stanzas_in_total{{kind=\"{}\"}} {v}", k.label());
        }
        let _ = writeln!(
            s,
            "# HELP tidemark_stanzas_out_total Stanzas sent to the server, by element.\n# TYPE tidemark_stanzas_out_total counter"
        );
        for k in StanzaKind::ALL {
            let v = self.stanzas_out[index(&StanzaKind::ALL, k)].load(Relaxed);
            let _ = writeln!(
                s,
                "tidemark_stanzas_out_total{{kind=\"{}\"}} {v}",
                k.label()
            );
        }
        let _ = writeln!(
            s,
            "# HELP tidemark_refusals_total Stanzas refused, by reason.\n# TYPE tidemark_refusals_total counter"
        );
        for r in Refusal::ALL {
            let _ = writeln!(
                s,
                "tidemark_refusals_total{{reason=\"{}\"}} {}",
                r.label(),
                self.refusals(r)
            );
        }
        let simple = [
            (
                "tidemark_statuses_recorded_total",
                "counter",
                "Message statuses written (sent, delivered, read, failed).",
                self.statuses_recorded.load(Relaxed),
            ),
            (
                "tidemark_reconnects_total",
                "counter",
                "Connections to the server after the first.",
                self.reconnects.load(Relaxed),
            ),
            (
                "tidemark_rooms",
                "gauge",
                "Rooms tidemark keeps.",
                self.rooms.load(Relaxed),
            ),
            (
                "tidemark_tracked_presences",
                "gauge",
                "Contact resources whose presence tidemark keeps.",
                self.tracked_presences.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP tidemark_flush_seconds Time to make a batch durable.\n# TYPE tidemark_flush_seconds histogram"
        );
        for (bucket, bound) in self.flush_buckets.iter().zip(FLUSH_BUCKETS) {
            let _ = writeln!(
                s,
                "tidemark_flush_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.flush_count.load(Relaxed);
        let _ = writeln!(s, "tidemark_flush_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "tidemark_flush_seconds_sum {}",
            self.flush_micros_sum.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "tidemark_flush_seconds_count {count}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_family_once_with_its_type() {
        METRICS.refused(Refusal::RateLimit);
        METRICS.flushed(std::time::Duration::from_millis(3));
        let text = METRICS.render();
        for family in [
            "tidemark_stanzas_in_total",
            "tidemark_stanzas_out_total",
            "tidemark_refusals_total",
            "tidemark_statuses_recorded_total",
            "tidemark_reconnects_total",
            "tidemark_rooms",
            "tidemark_tracked_presences",
            "tidemark_flush_seconds",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}\n{text}"
            );
        }
        assert!(text.contains("tidemark_refusals_total{reason=\"rate_limit\"} "));
        let inf = text
            .lines()
            .find(|l| l.starts_with("tidemark_flush_seconds_bucket{le=\"+Inf\"}"))
            .unwrap();
        assert!(!inf.ends_with(" 0"), "{inf}");
    }
}
