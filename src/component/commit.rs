//! Pipelined group commit: the answers of a batch of stanzas are held until a
//! flush that started after the batch's last write is done, while the next
//! batch is read and handled.
//!
//! At most two batches are held: the one whose flush is running, and the one
//! being gathered behind it. The gathered one is bounded (`storage.flush_batch`
//! stanzas), so a store slower than the server makes tidemark stop reading,
//! not grow. sled's flush makes everything written before it started durable,
//! so a flush that starts once a batch is fully handled covers all of that
//! batch's writes, and earlier ones.
//!
//! Each batch keeps the stanzas it handled until its flush is done: when a
//! flush fails, their senders are to be told ([`GroupCommit::unanswered`]),
//! since nothing of theirs goes out.

use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tokio::task::JoinHandle;

use crate::metrics::METRICS;
use crate::store::{Store, StoreError, StoreResult};

/// Makes every write so far durable (the store's flush; a test's held one).
pub(crate) type Flush = Arc<dyn Fn() -> StoreResult<()> + Send + Sync>;

pub(crate) struct GroupCommit {
    flush: Flush,
    limit: usize,
    flushing: Option<InFlight>,
    gathering: Batch,
    /// An emptied vector of answers, for the next batch to gather into
    /// ([`GroupCommit::recycle`]).
    spare: Vec<Element>,
    /// The stanzas of batches whose flush is done, to be freed.
    spent: Vec<Element>,
    /// The stanzas of the batches a failed flush left unanswered.
    unanswered: Vec<Element>,
}

struct InFlight {
    answers: Vec<Element>,
    handled: Vec<Element>,
    started: Instant,
    task: JoinHandle<StoreResult<()>>,
}

#[derive(Default)]
struct Batch {
    /// Stanzas handled into this batch: what the bound counts, since a
    /// stanza's writes need the flush even when it has no answer.
    stanzas: usize,
    answers: Vec<Element>,
    /// The stanzas themselves, as [`GroupCommit::hold`] gave them.
    handled: Vec<Element>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.stanzas == 0 && self.answers.is_empty()
    }
}

impl GroupCommit {
    /// Flushing `store`; the batch being gathered takes at most `limit`
    /// stanzas while a flush runs.
    pub fn new(store: Arc<dyn Store>, limit: usize) -> Self {
        Self::with_flush(Arc::new(move || store.flush()), limit)
    }

    pub fn with_flush(flush: Flush, limit: usize) -> Self {
        GroupCommit {
            flush,
            limit: limit.max(1),
            flushing: None,
            gathering: Batch::default(),
            spare: Vec::new(),
            spent: Vec::new(),
            unanswered: Vec::new(),
        }
    }

    /// How many more stanzas may be read and handled now; 0 means wait for
    /// [`GroupCommit::durable`].
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.gathering.stanzas)
    }

    /// Where the batch being gathered keeps its answers, for a caller to add
    /// them one by one before [`GroupCommit::gather`] counts their stanzas.
    pub fn answers(&mut self) -> &mut Vec<Element> {
        if self.gathering.answers.capacity() == 0 {
            self.gathering.answers = std::mem::take(&mut self.spare);
        }
        &mut self.gathering.answers
    }

    /// Takes back a vector of answers that were sent, emptied, for a later
    /// batch to gather into: a batch's answers are hundreds of elements, and
    /// a new vector for each made glibc's allocator consolidate its free
    /// lists. One at most is kept, of at most a few batches' size.
    pub fn recycle(&mut self, mut emptied: Vec<Element>) {
        emptied.clear();
        if emptied.capacity() > self.spare.capacity() && emptied.capacity() <= 8 * self.limit + 64 {
            self.spare = emptied;
        }
    }

    /// Keeps the stanzas handled into the batch being gathered until its
    /// flush is done.
    pub fn hold(&mut self, handled: Vec<Element>) {
        if self.gathering.handled.is_empty() {
            self.gathering.handled = handled;
        } else {
            self.gathering.handled.extend(handled);
        }
    }

    /// The stanzas of the batches whose flush is done, to be freed.
    pub fn take_spent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.spent)
    }

    /// After a failed flush: the stanzas of its batch and of the one
    /// gathered behind it, none of which was answered.
    pub fn unanswered(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.unanswered)
    }

    /// Adds `stanzas` handled stanzas, all of whose writes are done, and
    /// their `answers`. With no flush running, one starts at once for them.
    pub fn gather(&mut self, stanzas: usize, answers: Vec<Element>) {
        self.gathering.stanzas += stanzas;
        self.answers().extend(answers);
        if self.flushing.is_none() {
            self.start();
        }
    }

    fn start(&mut self) {
        if self.gathering.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.gathering);
        let flush = self.flush.clone();
        self.flushing = Some(InFlight {
            answers: batch.answers,
            handled: batch.handled,
            started: Instant::now(),
            // fsync blocks for milliseconds: off the connection's task, so
            // reading goes on meanwhile.
            task: tokio::task::spawn_blocking(move || flush()),
        });
    }

    /// Once the running flush is done: its batch's answers, now safe to
    /// send, in the order they were gathered; the flush of the batch gathered
    /// meanwhile starts before this returns. Never resolves while no flush
    /// runs. Cancel-safe: nothing is taken until the flush is done.
    pub async fn durable(&mut self) -> StoreResult<Vec<Element>> {
        let Some(running) = self.flushing.as_mut() else {
            return std::future::pending().await;
        };
        let result = (&mut running.task).await;
        let Some(done) = self.flushing.take() else {
            unreachable!("the running flush was there above");
        };
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(StoreError::Backend(format!("the flush failed: {e}"))),
        };
        if let Some(e) = failed {
            // The batch behind it goes with it: its writes were made on a
            // store the service no longer trusts, and it is not flushed.
            let behind = std::mem::take(&mut self.gathering);
            self.unanswered = done.handled;
            self.unanswered.extend(behind.handled);
            return Err(e);
        }
        METRICS.flushed(done.started.elapsed());
        if self.spent.is_empty() {
            self.spent = done.handled;
        } else {
            self.spent.extend(done.handled);
        }
        self.start();
        Ok(done.answers)
    }

    /// Every answer held, once durable, in order: the running flush's batch,
    /// then the one gathered behind it.
    pub async fn settle(&mut self) -> StoreResult<Vec<Element>> {
        let mut out = Vec::new();
        while self.flushing.is_some() {
            out.extend(self.durable().await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::time::Duration;

    use super::*;
    use crate::store::SledStore;

    /// A sled store whose flush waits for the test to let it through, and
    /// counts the flushes that completed.
    struct Held {
        store: SledStore,
        gate: Mutex<Receiver<()>>,
        done: Mutex<usize>,
    }

    fn held(limit: usize) -> (GroupCommit, Sender<()>, Arc<Held>) {
        let (open, gate) = channel();
        let held = Arc::new(Held {
            store: SledStore::temporary().unwrap(),
            gate: Mutex::new(gate),
            done: Mutex::new(0),
        });
        let h = held.clone();
        let commit = GroupCommit::with_flush(
            Arc::new(move || {
                // The test dropping its end lets any flush still held go.
                let _ = h.gate.lock().unwrap().recv();
                h.store.flush()?;
                *h.done.lock().unwrap() += 1;
                Ok(())
            }),
            limit,
        );
        (commit, open, held)
    }

    fn answer(id: &str) -> Element {
        crate::stanza::element("message", crate::stanza::ns::COMPONENT, &[("id", id)])
    }

    fn ids(out: &[Element]) -> Vec<&str> {
        out.iter().map(|e| e.attr("id").unwrap()).collect()
    }

    /// Whether `durable` gives anything within a while (it must not while
    /// the flush is held).
    async fn durable_soon(commit: &mut GroupCommit) -> Option<Vec<Element>> {
        tokio::time::timeout(Duration::from_millis(200), commit.durable())
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn nothing_is_released_before_its_flush_is_done() {
        let (mut commit, open, held) = held(8);
        commit.gather(1, vec![answer("a")]);
        assert!(durable_soon(&mut commit).await.is_none());
        assert_eq!(*held.done.lock().unwrap(), 0);
        open.send(()).unwrap();
        let out = durable_soon(&mut commit).await.expect("released");
        assert_eq!(ids(&out), ["a"]);
        assert_eq!(*held.done.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn the_batch_gathered_during_a_flush_waits_for_a_flush_of_its_own() {
        let (mut commit, open, held) = held(8);
        commit.gather(1, vec![answer("a")]);
        // Handled while the first flush runs: its writes may be after the
        // flush started, so that flush does not cover them.
        commit.gather(2, vec![answer("b"), answer("c")]);
        open.send(()).unwrap();
        assert_eq!(ids(&durable_soon(&mut commit).await.unwrap()), ["a"]);
        assert!(durable_soon(&mut commit).await.is_none());
        open.send(()).unwrap();
        assert_eq!(ids(&durable_soon(&mut commit).await.unwrap()), ["b", "c"]);
        assert_eq!(*held.done.lock().unwrap(), 2);
        assert!(durable_soon(&mut commit).await.is_none(), "nothing left");
    }

    #[tokio::test]
    async fn the_gathered_batch_is_bounded_while_a_flush_runs() {
        let (mut commit, open, _held) = held(3);
        assert_eq!(commit.room(), 3);
        commit.gather(3, vec![answer("a")]);
        assert_eq!(commit.room(), 3, "that batch is flushing, not gathered");
        commit.gather(2, vec![]);
        assert_eq!(commit.room(), 1);
        commit.gather(1, vec![answer("b")]);
        assert_eq!(commit.room(), 0, "full: stop reading");
        open.send(()).unwrap();
        commit.durable().await.unwrap();
        assert_eq!(commit.room(), 3, "its flush started, room again");
    }

    #[tokio::test]
    async fn stanzas_without_answers_are_flushed_too() {
        let (mut commit, open, held) = held(8);
        commit.gather(2, vec![]);
        open.send(()).unwrap();
        assert_eq!(durable_soon(&mut commit).await.unwrap().len(), 0);
        assert_eq!(*held.done.lock().unwrap(), 1);
        commit.gather(0, vec![]);
        assert!(
            durable_soon(&mut commit).await.is_none(),
            "nothing handled, no flush"
        );
    }

    #[tokio::test]
    async fn settle_gives_everything_in_order_once_durable() {
        let (mut commit, open, held) = held(8);
        commit.gather(1, vec![answer("a"), answer("b")]);
        commit.gather(1, vec![answer("c")]);
        open.send(()).unwrap();
        open.send(()).unwrap();
        let out = commit.settle().await.unwrap();
        assert_eq!(ids(&out), ["a", "b", "c"]);
        assert_eq!(*held.done.lock().unwrap(), 2);
        assert!(commit.settle().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn answers_added_in_place_and_recycled_room_keep_their_order() {
        let (mut commit, open, _held) = held(8);
        commit.answers().push(answer("a"));
        commit.answers().push(answer("b"));
        commit.gather(2, vec![answer("c")]);
        commit.answers().push(answer("d"));
        commit.gather(1, vec![]);
        open.send(()).unwrap();
        let first = durable_soon(&mut commit).await.unwrap();
        assert_eq!(ids(&first), ["a", "b", "c"]);
        let room = first.capacity();
        commit.recycle(first);
        open.send(()).unwrap();
        let second = durable_soon(&mut commit).await.unwrap();
        assert_eq!(ids(&second), ["d"]);
        // The batch gathered after the recycling uses the recycled room.
        commit.answers().push(answer("e"));
        assert_eq!(commit.answers().capacity(), room);
        commit.gather(1, vec![]);
        open.send(()).unwrap();
        assert_eq!(ids(&durable_soon(&mut commit).await.unwrap()), ["e"]);
    }

    #[tokio::test]
    async fn a_failed_flush_releases_nothing() {
        let mut commit =
            GroupCommit::with_flush(Arc::new(|| Err(StoreError::Backend("disk gone".into()))), 8);
        commit.gather(1, vec![answer("a")]);
        let err = commit.durable().await.expect_err("the flush failed");
        assert!(err.to_string().contains("disk gone"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_flush_leaves_its_stanzas_and_those_behind_it_unanswered() {
        let (mut commit, open, _held) = held(8);
        commit.hold(vec![answer("in1")]);
        commit.gather(1, vec![answer("a")]);
        open.send(()).unwrap();
        assert_eq!(ids(&durable_soon(&mut commit).await.unwrap()), ["a"]);
        assert_eq!(ids(&commit.take_spent()), ["in1"], "done: to be freed");
        assert!(commit.unanswered().is_empty());

        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = failing.clone();
        let mut commit = GroupCommit::with_flush(
            Arc::new(move || {
                if f.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(StoreError::BatchLost("refused".into()))
                } else {
                    Ok(())
                }
            }),
            8,
        );
        commit.hold(vec![answer("in2"), answer("in3")]);
        commit.gather(2, vec![answer("b")]);
        // Handled while that flush ran.
        commit.hold(vec![answer("in4")]);
        commit.gather(1, vec![answer("c")]);
        let err = commit.durable().await.expect_err("the flush failed");
        assert!(matches!(err, StoreError::BatchLost(_)), "{err}");
        assert_eq!(ids(&commit.unanswered()), ["in2", "in3", "in4"]);
        assert!(commit.take_spent().is_empty());
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(
            durable_soon(&mut commit).await.is_none(),
            "nothing of the lost batches is left to release"
        );
    }
}
