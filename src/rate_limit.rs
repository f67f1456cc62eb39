//! The per-sender rate limit (`limits.rate_per_second`, `limits.rate_burst`):
//! a token bucket per sender bare JID, checked before anything else is done
//! with a stanza. One hash lookup per stanza.

use std::collections::HashMap;

use crate::store::Millis;

/// How many senders' buckets are kept at most. A bucket is dropped once it
/// has refilled (the sender has been quiet for `burst / rate` seconds), so
/// this only binds when this many senders are all active at once, which
/// takes a flood of fresh JIDs; 65,536 buckets is a few MB.
pub const MAX_BUCKETS: usize = 65_536;

/// When the map is full and nothing has refilled, this fraction of the
/// buckets (the fullest) goes in one pass, so the pass is paid once per
/// many new senders rather than on each.
const EVICT_DIVISOR: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_ms: f64,
    burst: f64,
    cap: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self::with_cap(rate_per_second, burst, MAX_BUCKETS)
    }

    pub fn with_cap(rate_per_second: f64, burst: u32, cap: usize) -> Self {
        Self {
            per_ms: rate_per_second / 1000.0,
            burst: f64::from(burst.max(1)),
            cap: cap.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token from `sender`'s bucket; false when there is none.
    pub fn allow(&mut self, sender: &str, now: Millis) -> bool {
        if let Some(b) = self.buckets.get_mut(sender) {
            let refilled = b.tokens + now.saturating_sub(b.at) as f64 * self.per_ms;
            b.tokens = refilled.min(self.burst);
            b.at = now.max(b.at);
            if b.tokens < 1.0 {
                return false;
            }
            b.tokens -= 1.0;
            return true;
        }
        if self.buckets.len() >= self.cap {
            self.make_room(now);
        }
        self.buckets.insert(
            sender.to_owned(),
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    /// Drops the buckets that have refilled: a sender without a bucket gets a
    /// full one, so forgetting them changes nothing.
    pub fn sweep(&mut self, now: Millis) {
        let (per_ms, burst) = (self.per_ms, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_sub(b.at) as f64 * per_ms < burst);
    }

    /// Full map: sweep, and if every sender is still active, forget the
    /// fullest buckets. Forgetting a bucket hands its sender at most the
    /// few tokens it was short of a full one, and the fullest are the
    /// senders that were about to be forgotten anyway. Refusing newcomers
    /// instead would let a flood of fresh JIDs lock every other user out.
    fn make_room(&mut self, now: Millis) {
        self.sweep(now);
        if self.buckets.len() < self.cap {
            return;
        }
        let per_ms = self.per_ms;
        let level = |b: &Bucket| b.tokens + now.saturating_sub(b.at) as f64 * per_ms;
        let mut levels: Vec<f64> = self.buckets.values().map(level).collect();
        let drop = (self.cap / EVICT_DIVISOR).max(1);
        let pivot = levels.len() - drop;
        let (_, threshold, _) = levels.select_nth_unstable_by(pivot, f64::total_cmp);
        let threshold = *threshold;
        let mut left = drop;
        self.buckets.retain(|_, b| {
            if left > 0 && level(b) >= threshold {
                left -= 1;
                false
            } else {
                true
            }
        });
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = RateLimiter::new(2.0, 3);
        assert!((0..3).all(|_| r.allow("a@x", 0)));
        assert!(!r.allow("a@x", 0), "burst spent");
        assert!(r.allow("b@x", 0), "others are not affected");
        assert!(!r.allow("a@x", 400), "half a second buys one token at 2/s");
        assert!(r.allow("a@x", 500));
        assert!(!r.allow("a@x", 500));
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let mut r = RateLimiter::new(10.0, 10);
        r.allow("a@x", 0);
        for _ in 0..10 {
            r.allow("b@x", 0);
        }
        r.sweep(500);
        assert_eq!(r.len(), 1, "a refilled after 100 ms, b has not yet");
        r.sweep(1000);
        assert!(r.is_empty());
    }

    #[test]
    fn the_map_never_outgrows_its_cap_and_busy_senders_stay_limited() {
        let mut r = RateLimiter::with_cap(1.0, 2, 64);
        assert!(r.allow("busy@x", 0) && r.allow("busy@x", 0));
        for i in 0..10_000 {
            r.allow(&format!("fresh{i}@x"), 0);
            assert!(r.len() <= 64);
        }
        // The busy sender had the emptiest bucket: never the one forgotten.
        assert!(!r.allow("busy@x", 0));
    }
}
