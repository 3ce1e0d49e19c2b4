//! PostgreSQL's hold-back line: the change value below which every row that will ever commit
//! is already visible, proven from the replica alone.
//!
//! Each poll records an *epoch* `(U, h)` before it takes its snapshot: h is the horizon, the
//! primary's clock at the last commit the replica has applied (the clock itself on a
//! primary), and U the first transaction id the replica had not seen assigned, found after h
//! was read. A transaction whose id is at least U wrote its first row after h.
//!
//! A poll's snapshot with xmin X shows every transaction with an id below X finished; every
//! transaction it does not show has an id of at least X. Take the latest epoch j with
//! `U_j ≤ X`: every such transaction wrote its first row after `h_j`. If none takes longer
//! than G (`max_write_delay`) from stamping a change value to its first write, every row it
//! will ever commit has a change value of at least `h_j − G`: that is the line. A long open
//! writer keeps X, and with it the line, where it started; an idle primary does not, since
//! with nothing running X reaches U at once.
//!
//! Passes run side by side, and one that took its snapshot earlier may ask for its line
//! later: epochs are dropped only once no open snapshot can prefer them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

/// Epochs kept at most; past this every other one is dropped, which only delays the line.
const MAX_EPOCHS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Epoch {
    next_xid: u64,
    horizon: DateTime<Utc>,
}

/// The epochs of one source, oldest first.
#[derive(Debug, Default)]
pub struct Epochs {
    entries: VecDeque<Epoch>,
    /// The xmins of the snapshots passes hold ([`OpenSnapshot`]).
    open: Vec<u64>,
}

/// A pass's snapshot, from when it was taken until the pass is done with it: the epochs it
/// may ask for are kept meanwhile.
pub struct OpenSnapshot<'a> {
    epochs: &'a Mutex<Epochs>,
    xmin: u64,
}

impl OpenSnapshot<'_> {
    pub fn new(epochs: &Mutex<Epochs>, xmin: u64) -> OpenSnapshot<'_> {
        lock(epochs).open.push(xmin);
        OpenSnapshot { epochs, xmin }
    }

    /// The line this snapshot proves; see [`Epochs::line_for`].
    pub fn line(&self) -> Option<DateTime<Utc>> {
        lock(self.epochs).line_for(self.xmin)
    }
}

impl Drop for OpenSnapshot<'_> {
    fn drop(&mut self) {
        let mut epochs = lock(self.epochs);
        if let Some(at) = epochs.open.iter().position(|xmin| *xmin == self.xmin) {
            epochs.open.swap_remove(at);
        }
    }
}

fn lock(epochs: &Mutex<Epochs>) -> std::sync::MutexGuard<'_, Epochs> {
    epochs.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Epochs {
    /// Records that every transaction id from `next_xid` on was assigned after `horizon`.
    pub fn record(&mut self, next_xid: u64, horizon: DateTime<Utc>) {
        if self.entries.len() >= MAX_EPOCHS {
            let mut keep = false;
            self.entries.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.entries.push_back(Epoch { next_xid, horizon });
    }

    /// The latest horizon that every transaction not visible in a snapshot with xmin
    /// `snapshot_xmin` wrote its first row after; `None` if no epoch proves one yet. Epochs
    /// that no open snapshot, nor any taken later (a later snapshot's xmin is never lower),
    /// can prefer are dropped.
    pub fn line_for(&mut self, snapshot_xmin: u64) -> Option<DateTime<Utc>> {
        let line = self.best(snapshot_xmin).map(|epoch| epoch.horizon);
        let oldest = self.open.iter().copied().fold(snapshot_xmin, u64::min);
        if let Some(kept) = self.best(oldest) {
            self.entries
                .retain(|epoch| *epoch == kept || epoch.next_xid > oldest);
        }
        line
    }

    fn best(&self, snapshot_xmin: u64) -> Option<Epoch> {
        self.entries
            .iter()
            .filter(|epoch| epoch.next_xid <= snapshot_xmin)
            .max_by_key(|epoch| epoch.horizon)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_line_is_the_latest_horizon_whose_ids_the_snapshot_has_passed() {
        let mut epochs = Epochs::default();
        epochs.record(100, at(1));
        epochs.record(105, at(2));
        epochs.record(110, at(3));
        // Transaction 104 still open: only the first epoch is proven.
        assert_eq!(epochs.line_for(104), Some(at(1)));
        // Open since before any epoch: nothing is proven.
        let mut fresh = Epochs::default();
        fresh.record(100, at(1));
        assert_eq!(fresh.line_for(99), None);
        // It finished: the latest epoch below the new xmin wins.
        assert_eq!(epochs.line_for(107), Some(at(2)));
        assert_eq!(epochs.line_for(110), Some(at(3)));
    }

    #[test]
    fn a_snapshot_taken_earlier_keeps_its_epoch_while_a_later_one_asks_first() {
        let epochs = Mutex::new(Epochs::default());
        lock(&epochs).record(100, at(1));
        let slow = OpenSnapshot::new(&epochs, 104);
        lock(&epochs).record(105, at(2));
        lock(&epochs).record(110, at(3));
        let fast = OpenSnapshot::new(&epochs, 112);
        assert_eq!(fast.line(), Some(at(3)));
        drop(fast);
        assert_eq!(slow.line(), Some(at(1)), "the slow pass's epoch was kept");
        drop(slow);
        // Nothing open: what no later snapshot can prefer goes.
        assert_eq!(lock(&epochs).line_for(112), Some(at(3)));
        assert_eq!(lock(&epochs).entries.len(), 1);
    }

    #[test]
    fn an_idle_source_proves_the_current_epoch_at_once() {
        let mut epochs = Epochs::default();
        // Nothing running: the snapshot's xmin is the next id itself.
        epochs.record(500, at(9));
        assert_eq!(epochs.line_for(500), Some(at(9)));
    }

    #[test]
    fn superseded_epochs_are_dropped_and_the_list_stays_bounded() {
        let mut epochs = Epochs::default();
        for i in 0..10 {
            epochs.record(100 + i, at(i as i64));
        }
        assert_eq!(epochs.line_for(104), Some(at(4)));
        assert_eq!(
            epochs.entries.len(),
            6,
            "the best proven one and those still ahead"
        );
        for i in 0..(2 * MAX_EPOCHS as u64) {
            epochs.record(1_000 + i, at(100 + i as i64));
        }
        assert!(epochs.entries.len() <= MAX_EPOCHS);
        let line = epochs.line_for(u64::MAX).unwrap();
        assert!(line >= at(100 + 2 * MAX_EPOCHS as i64 - 2), "{line}");
    }
}
