//! `cdc` mode: a table's changes read from its change data capture instance by LSN, as
//! Debezium's SQL Server connector does, on the readable secondary (the change tables
//! replicate like any table; the capture job runs on the primary).
//!
//! Exact: `sys.fn_cdc_get_max_lsn()` is the last commit LSN the capture job has processed,
//! the high end of every capture instance's timeline, so every change committed up to it
//! is in the change tables (on a secondary, as redone up to its max LSN). A pass reads the
//! rows after the schedule's [`Cursor`] up to that LSN, in the change table's clustered
//! order (`__$start_lsn, __$command_id, __$seqval, __$operation`, unique, so paging never
//! skips a row), a budget of pages at a time. The cursor moves to the last row read, or,
//! once a pass has read everything, to that LSN itself; rows are read once (a crash before
//! the mark moves reads them again, and the queue's identity key keeps the notification
//! single).
//!
//! The hold-back line, below which the sweep and audits work, follows the commit time of
//! the LSN read up to, minus the lookback. A cursor that the cleanup job has overtaken means
//! changes were removed unread: logged at ERROR, and reading continues from the oldest change
//! kept; the sweep finds what it can.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use tiberius::Row;

use super::{Session, refused, required, value};
use crate::config::DetectorSettings;
use crate::model::{ChangedRow, Changes, Mark};
use crate::store::Record;
use crate::store::detection::PAGES_PER_PASS;
use crate::store::{CaptureQueries, StoreResult};

/// A log sequence number, SQL Server's `binary(10)`; ordered as SQL Server compares them,
/// byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Lsn(u128);

impl Lsn {
    const BYTES: usize = 10;

    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != Self::BYTES {
            return Err(format!(
                "an LSN has {} bytes, not {}",
                Self::BYTES,
                bytes.len()
            ));
        }
        Ok(Lsn(bytes.iter().fold(0, |n, &b| n << 8 | u128::from(b))))
    }

    pub(super) fn to_bytes(self) -> [u8; Self::BYTES] {
        let all = self.0.to_be_bytes();
        all[all.len() - Self::BYTES..]
            .try_into()
            .expect("ten bytes")
    }

    /// The LSN just below: everything from `self` on is everything after `self.previous()`.
    fn previous(self) -> Self {
        Lsn(self.0.saturating_sub(1))
    }

    fn next(self) -> Self {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    /// Twenty hex digits, as `CONVERT(char(20), lsn, 2)` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020X}", self.0)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() != 2 * Self::BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("not an LSN (20 hex digits): {text:?}"));
        }
        u128::from_str_radix(text, 16)
            .map(Lsn)
            .map_err(|e| e.to_string())
    }
}

/// A change table row's clustered key: where it stands in the capture timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ChangeId {
    /// The commit LSN of its transaction.
    pub start_lsn: Lsn,
    /// The statement's order within the transaction.
    pub command_id: i32,
    /// The row change's order within the statement.
    pub seqval: Lsn,
    /// 1 delete, 2 insert, 3 update (before), 4 update (after).
    pub operation: i32,
}

/// How far a schedule's capture read has gone: everything up to it is read. Persisted as
/// the mark's `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cursor {
    /// Every change committed at or before this LSN.
    Commit(Lsn),
    /// Every change table row up to and including this one (a pass that stopped inside
    /// the changes of one LSN).
    Change(ChangeId),
}

impl Cursor {
    /// The lowest commit LSN whose changes may still be unread.
    fn first_unread(self) -> Lsn {
        match self {
            Cursor::Commit(lsn) => lsn.next(),
            Cursor::Change(id) => id.start_lsn,
        }
    }

    /// Where to read from when the capture instance keeps changes from `min_lsn` on: `None`
    /// when nothing unread has been cleaned up, else the cursor just below the oldest kept.
    fn overtaken_by(self, min_lsn: Lsn) -> Option<Cursor> {
        (self.first_unread() < min_lsn).then(|| Cursor::Commit(min_lsn.previous()))
    }

    /// The page query's cursor parameters: start LSN, then command id, seqval and
    /// operation (all `None` for a whole commit LSN).
    fn parameters(
        self,
    ) -> (
        [u8; Lsn::BYTES],
        Option<i32>,
        Option<[u8; Lsn::BYTES]>,
        Option<i32>,
    ) {
        match self {
            Cursor::Commit(lsn) => (lsn.to_bytes(), None, None, None),
            Cursor::Change(id) => (
                id.start_lsn.to_bytes(),
                Some(id.command_id),
                Some(id.seqval.to_bytes()),
                Some(id.operation),
            ),
        }
    }
}

impl Ord for Cursor {
    /// By LSN; a whole commit LSN comes after every row it holds.
    fn cmp(&self, other: &Self) -> Ordering {
        let key = |cursor: &Cursor| match *cursor {
            Cursor::Commit(lsn) => (lsn, None),
            Cursor::Change(id) => (id.start_lsn, Some(id)),
        };
        let ((lsn, change), (other_lsn, other_change)) = (key(self), key(other));
        lsn.cmp(&other_lsn).then(match (change, other_change) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(&b),
        })
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Cursor {
    /// `start_lsn`, or `start_lsn:command_id:seqval:operation`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Commit(lsn) => write!(f, "{lsn}"),
            Cursor::Change(id) => write!(
                f,
                "{}:{}:{}:{}",
                id.start_lsn, id.command_id, id.seqval, id.operation
            ),
        }
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let number = |part: &str| {
            part.parse::<i32>()
                .map_err(|_| format!("not a capture position: {text:?}"))
        };
        match parts.as_slice() {
            [lsn] => Ok(Cursor::Commit(lsn.parse()?)),
            [lsn, command_id, seqval, operation] => Ok(Cursor::Change(ChangeId {
                start_lsn: lsn.parse()?,
                command_id: number(command_id)?,
                seqval: seqval.parse()?,
                operation: number(operation)?,
            })),
            _ => Err(format!("not a capture position: {text:?}")),
        }
    }
}

/// One row of a capture page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CaptureRow {
    pub id: ChangeId,
    pub row: ChangedRow,
}

/// What a capture pass read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CaptureRead {
    pub rows: Vec<ChangedRow>,
    /// The last row read, else where the pass started.
    pub cursor: Cursor,
    /// False when the pass stopped at its budget.
    pub complete: bool,
}

/// A capture pass, page by page: the engine asks for the page after [`CapturePager::cursor`]
/// (up to `page_size` rows, up to the pass's LSN, in the change table's order) and hands it
/// to [`CapturePager::take`] until that says the pass is done. Every row is new, so every
/// page counts against the budget ([`PAGES_PER_PASS`]).
#[derive(Debug)]
pub(super) struct CapturePager {
    page_size: usize,
    pages_left: usize,
    rows: Vec<ChangedRow>,
    cursor: Cursor,
    complete: bool,
}

impl CapturePager {
    pub(super) fn new(from: Cursor, page_size: u32) -> Self {
        CapturePager {
            page_size: page_size as usize,
            pages_left: PAGES_PER_PASS,
            rows: Vec::new(),
            cursor: from,
            complete: false,
        }
    }

    /// Where the next page starts (after it).
    pub(super) fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Takes a page; true if the pass reads another.
    pub(super) fn take(&mut self, page: Vec<CaptureRow>) -> bool {
        let full = page.len() >= self.page_size;
        for CaptureRow { id, row } in page {
            self.cursor = Cursor::Change(id);
            self.rows.push(row);
        }
        self.complete = !full;
        self.pages_left -= 1;
        full && self.pages_left > 0
    }

    pub(super) fn finish(self) -> CaptureRead {
        CaptureRead {
            rows: self.rows,
            cursor: self.cursor,
            complete: self.complete,
        }
    }
}

/// The mark after a pass that read up to commit LSN `max_lsn`, committed at `committed_at`:
/// a complete pass moves the cursor to that LSN (never back: a replica behind the one the
/// cursor came from has nothing new) and the hold-back line to its commit time minus the
/// lookback (never back either); a pass stopped at its budget moves only the cursor.
pub(super) fn next_mark(
    mark: &Mark,
    read: &CaptureRead,
    max_lsn: Lsn,
    committed_at: Option<DateTime<Utc>>,
    lookback: chrono::Duration,
) -> Mark {
    let (cursor, hold_back) = if read.complete {
        let line = committed_at.map(|at| at - lookback);
        (
            read.cursor.max(Cursor::Commit(max_lsn)),
            line.map_or(mark.hold_back, |line| mark.hold_back.max(line)),
        )
    } else {
        (read.cursor, mark.hold_back)
    };
    Mark {
        hold_back,
        frontier: None,
        position: Some(cursor.to_string()),
        ..mark.clone()
    }
}

/// Where change data capture stands (`source_cdc_bounds.sql`).
struct Bounds {
    max_lsn: Option<Lsn>,
    max_lsn_committed_at: Option<DateTime<Utc>>,
    min_lsn: Option<Lsn>,
    replica_now: DateTime<Utc>,
}

/// An LSN column; NULL and `0x00…` (what the CDC functions answer for "none") are `None`.
fn lsn(row: &Row, column: &str) -> StoreResult<Option<Lsn>> {
    let Some(bytes) = value::<&[u8]>(row, column)? else {
        return Ok(None);
    };
    let lsn = Lsn::from_bytes(bytes).map_err(refused)?;
    Ok((lsn != Lsn(0)).then_some(lsn))
}

async fn bounds(session: &mut Session<'_>, capture: &CaptureQueries) -> StoreResult<Bounds> {
    let rows = session
        .query(query!("source_cdc_bounds"), &[&capture.instance.as_str()])
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| refused("no change data capture bounds"))?;
    Ok(Bounds {
        max_lsn: lsn(row, "max_lsn")?,
        max_lsn_committed_at: value(row, "max_lsn_committed_at")?,
        min_lsn: lsn(row, "min_lsn")?,
        replica_now: required(row, "replica_now")?,
    })
}

/// A new schedule's mark: after the last commit LSN captured, else (the capture job has not
/// scanned yet) from the replica's clock, found by commit time at the first pass.
pub(super) async fn start(
    session: &mut Session<'_>,
    capture: &CaptureQueries,
) -> StoreResult<Mark> {
    let bounds = bounds(session, capture).await?;
    Ok(match (bounds.max_lsn, bounds.max_lsn_committed_at) {
        (Some(lsn), Some(committed_at)) => Mark {
            hold_back: committed_at,
            frontier: None,
            position: Some(Cursor::Commit(lsn).to_string()),
            watching_since: Some(committed_at),
            definition: None,
        },
        _ => Mark::starting_at(bounds.replica_now),
    })
}

fn capture_row(row: &Row) -> StoreResult<CaptureRow> {
    let lsn_of = |column: &str| -> StoreResult<Lsn> {
        Lsn::from_bytes(required::<&[u8]>(row, column)?).map_err(refused)
    };
    Ok(CaptureRow {
        id: ChangeId {
            start_lsn: lsn_of("start_lsn")?,
            command_id: required(row, "command_id")?,
            seqval: lsn_of("seqval")?,
            operation: required(row, "operation")?,
        },
        row: ChangedRow {
            key: row.text("key_value")?,
            change: row.text("change_value")?,
            at: required(row, "change_at")?,
        },
    })
}

/// The schedule's cursor: its position, else (a new schedule whose capture job had not
/// scanned yet, or one coming from `poll` mode) the first commit at or after its hold-back
/// line; `None` while the capture job has processed no commit that late.
async fn cursor(session: &mut Session<'_>, mark: &Mark) -> StoreResult<Option<Cursor>> {
    if let Some(position) = mark.position.as_deref() {
        match position.parse() {
            Ok(cursor) => return Ok(Some(cursor)),
            Err(error) => tracing::warn!(
                position,
                error,
                "the mark's position is not a change data capture position; reading from \
                 the hold-back line"
            ),
        }
    }
    let rows = session
        .query(query!("source_cdc_lsn_at"), &[&mark.hold_back])
        .await?;
    match rows.first() {
        Some(row) => Ok(lsn(row, "lsn")?.map(|lsn| Cursor::Commit(lsn.previous()))),
        None => Ok(None),
    }
}

/// One `cdc` mode pass; see the module docs. Every statement runs on one session, so all of
/// them see the same replica.
pub(super) async fn changes(
    session: &mut Session<'_>,
    capture: &CaptureQueries,
    mark: &Mark,
    settings: &DetectorSettings,
) -> StoreResult<Changes> {
    let unchanged = || Changes {
        rows: Vec::new(),
        next: mark.clone(),
        complete: true,
        horizon: None,
    };
    let bounds = bounds(session, capture).await?;
    let Some(max_lsn) = bounds.max_lsn else {
        return Ok(unchanged());
    };
    let Some(mut from) = cursor(session, mark).await? else {
        return Ok(unchanged());
    };
    if let Some(oldest_kept) = bounds.min_lsn
        && let Some(resumed) = from.overtaken_by(oldest_kept)
    {
        tracing::error!(
            capture_instance = %capture.instance,
            read_up_to = %from,
            oldest_kept = %oldest_kept,
            "change data capture cleanup removed changes this schedule had not read; reading \
             on from the oldest change kept (the sweep finds what it can). Keep the detector \
             within the cleanup job's retention (sys.sp_cdc_change_job @retention)"
        );
        from = resumed;
    }
    let max = max_lsn.to_bytes();
    let limit = i64::from(settings.batch_size);
    let mut pager = CapturePager::new(from, settings.batch_size);
    loop {
        let (start_lsn, command_id, seqval, operation) = pager.cursor().parameters();
        let rows = session
            .query(
                &capture.changes,
                &[
                    &start_lsn.as_slice(),
                    &command_id,
                    &seqval.as_ref().map(|s| s.as_slice()),
                    &operation,
                    &max.as_slice(),
                    &limit,
                ],
            )
            .await?;
        let page = rows.iter().map(capture_row).collect::<StoreResult<_>>()?;
        if !pager.take(page) {
            break;
        }
    }
    let read = pager.finish();
    let lookback = chrono::Duration::from_std(settings.lookback).map_err(refused)?;
    let next = next_mark(mark, &read, max_lsn, bounds.max_lsn_committed_at, lookback);
    Ok(Changes {
        rows: read.rows,
        next,
        complete: read.complete,
        horizon: bounds.max_lsn_committed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(text: &str) -> Lsn {
        text.parse().unwrap()
    }

    fn change(start_lsn: &str, command_id: i32, seqval: &str, operation: i32) -> ChangeId {
        ChangeId {
            start_lsn: lsn(start_lsn),
            command_id,
            seqval: lsn(seqval),
            operation,
        }
    }

    #[test]
    fn lsns_parse_print_and_travel_as_ten_bytes() {
        let text = "0000002A000001F00003";
        let parsed = lsn(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(lsn("0000002a000001f00003"), parsed, "either case");
        let bytes = [0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x03];
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(Lsn::from_bytes(&bytes).unwrap(), parsed);
        let max = [0xFF; 10];
        assert_eq!(Lsn::from_bytes(&max).unwrap().to_string(), "F".repeat(20));
        assert_eq!(Lsn::from_bytes(&max).unwrap().to_bytes(), max);

        for bad in [
            "",
            "2A",
            "0000002A000001F0000",
            "0000002A000001F000030",
            "0x002A000001F00003",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
        assert!("0000002A000001F0000G".parse::<Lsn>().is_err());
        assert!(Lsn::from_bytes(&[0; 9]).is_err());
        assert!(Lsn::from_bytes(&[0; 11]).is_err());
    }

    #[test]
    fn lsns_order_as_sql_server_compares_binary_10() {
        // Bytewise, most significant first: the virtual log file, then the block, then the
        // record.
        let ordered = [
            "00000000000000000000",
            "0000002A000001F00003",
            "0000002A000001F00004",
            "0000002A000001F10000",
            "0000002B000000000001",
            "FFFFFFFFFFFFFFFFFFFF",
        ];
        for pair in ordered.windows(2) {
            assert!(lsn(pair[0]) < lsn(pair[1]), "{pair:?}");
        }
        assert_eq!(
            lsn("0000002B000000000000").previous(),
            lsn("0000002AFFFFFFFFFFFF")
        );
        assert_eq!(
            lsn("00000000000000000000").previous(),
            lsn("00000000000000000000")
        );
        assert_eq!(
            lsn("0000002AFFFFFFFFFFFF").next(),
            lsn("0000002B000000000000")
        );
    }

    #[test]
    fn positions_name_a_commit_or_a_change_table_row() {
        let commit = Cursor::Commit(lsn("0000002A000001F00003"));
        assert_eq!(commit.to_string(), "0000002A000001F00003");
        let row = Cursor::Change(change("0000002A000001F00003", 2, "0000002A000001E80002", 4));
        assert_eq!(
            row.to_string(),
            "0000002A000001F00003:2:0000002A000001E80002:4"
        );
        for cursor in [commit, row] {
            assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
        }
        for bad in [
            "",
            "0000002A000001F00003:2",
            "0000002A000001F00003:x:0000002A000001E80002:4",
            "0000002A000001F00003:2:0000002A000001E80002:4:1",
            // A PostgreSQL position (`system_identifier:xmin`) is not one.
            "7301234567890123456:1234",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_commit_cursor_comes_after_every_row_of_its_lsn() {
        let lsn_a = "0000002A000001F00003";
        let lsn_b = "0000002A000001F80001";
        let ordered = [
            Cursor::Change(change(lsn_a, 1, "0000002A000001E80002", 2)),
            Cursor::Change(change(lsn_a, 1, "0000002A000001E80002", 4)),
            Cursor::Change(change(lsn_a, 1, "0000002A000001E80005", 2)),
            // The statement order decides before the seqval.
            Cursor::Change(change(lsn_a, 2, "0000002A000001E80001", 2)),
            Cursor::Commit(lsn(lsn_a)),
            Cursor::Change(change(lsn_b, 1, "0000002A000001F00001", 2)),
            Cursor::Commit(lsn(lsn_b)),
        ];
        for pair in ordered.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        assert_eq!(ordered[4].max(ordered[3]), ordered[4]);
    }

    #[test]
    fn page_parameters_leave_the_row_part_null_for_a_whole_commit() {
        let (start, command, seqval, operation) =
            Cursor::Commit(lsn("0000002A000001F00003")).parameters();
        assert_eq!(start, lsn("0000002A000001F00003").to_bytes());
        assert_eq!((command, seqval, operation), (None, None, None));
        let id = change("0000002A000001F00003", 3, "0000002A000001E80002", 2);
        assert_eq!(
            Cursor::Change(id).parameters(),
            (
                id.start_lsn.to_bytes(),
                Some(3),
                Some(id.seqval.to_bytes()),
                Some(2)
            )
        );
    }

    #[test]
    fn a_cursor_overtaken_by_cleanup_resumes_at_the_oldest_change_kept() {
        let min = lsn("0000002A000001F00003");
        // Everything up to just below the oldest kept was read: nothing is missing.
        assert_eq!(Cursor::Commit(min.previous()).overtaken_by(min), None);
        assert_eq!(Cursor::Commit(min).overtaken_by(min), None);
        let mid_transaction =
            Cursor::Change(change("0000002A000001F00003", 1, "0000002A000001E80002", 2));
        assert_eq!(mid_transaction.overtaken_by(min), None);
        // Changes between the cursor and the oldest kept are gone.
        let behind = Cursor::Commit(lsn("00000029000000100001"));
        assert_eq!(
            behind.overtaken_by(min),
            Some(Cursor::Commit(min.previous()))
        );
        let inside_removed =
            Cursor::Change(change("00000029000000100001", 1, "00000029000000080001", 4));
        assert_eq!(
            inside_removed.overtaken_by(min),
            Some(Cursor::Commit(min.previous()))
        );
        // Resuming reads from the oldest kept on, that LSN included.
        assert_eq!(Cursor::Commit(min.previous()).first_unread(), min);
    }

    fn capture_row(id: ChangeId, key: &str) -> CaptureRow {
        CaptureRow {
            id,
            row: ChangedRow {
                key: key.into(),
                change: "2027-01-15T08:00:00".into(),
                at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            },
        }
    }

    /// `count` rows of one transaction, commit LSN `start_lsn`, from seqval `first` on.
    fn rows_of(start_lsn: &str, first: u128, count: usize) -> Vec<CaptureRow> {
        (0..count)
            .map(|i| {
                let id = ChangeId {
                    start_lsn: lsn(start_lsn),
                    command_id: 1,
                    seqval: Lsn(first + i as u128),
                    operation: 2,
                };
                capture_row(id, &format!("{first}-{i}"))
            })
            .collect()
    }

    #[test]
    fn pages_follow_the_last_row_read_until_a_short_page() {
        let from = Cursor::Commit(lsn("00000029000000100001"));
        let mut pager = CapturePager::new(from, 2);
        assert_eq!(pager.cursor(), from);
        let first = rows_of("0000002A000001F00003", 10, 2);
        let last_of_first = first[1].id;
        assert!(pager.take(first), "a full page: read on");
        assert_eq!(pager.cursor(), Cursor::Change(last_of_first));
        let second = rows_of("0000002A000001F00003", 12, 1);
        let last = second[0].id;
        assert!(!pager.take(second), "a short page ends the pass");
        let read = pager.finish();
        assert!(read.complete);
        assert_eq!(read.rows.len(), 3);
        assert_eq!(read.cursor, Cursor::Change(last));
    }

    #[test]
    fn an_empty_pass_keeps_its_cursor_and_is_complete() {
        let from = Cursor::Commit(lsn("0000002A000001F00003"));
        let mut pager = CapturePager::new(from, 100);
        assert!(!pager.take(Vec::new()));
        let read = pager.finish();
        assert!(read.complete);
        assert!(read.rows.is_empty());
        assert_eq!(read.cursor, from);
    }

    #[test]
    fn a_pass_stops_at_its_budget_inside_a_large_transaction() {
        let mut pager = CapturePager::new(Cursor::Commit(lsn("00000029000000100001")), 3);
        let mut pages = 0;
        let last = loop {
            let page = rows_of("0000002A000001F00003", 100 + 3 * pages as u128, 3);
            let last = page[2].id;
            pages += 1;
            if !pager.take(page) {
                break last;
            }
        };
        assert_eq!(pages, PAGES_PER_PASS);
        let read = pager.finish();
        assert!(!read.complete, "the transaction goes on");
        assert_eq!(read.rows.len(), 3 * PAGES_PER_PASS);
        assert_eq!(read.cursor, Cursor::Change(last), "inside the commit LSN");
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_complete_pass_moves_to_the_lsn_read_up_to_and_the_line_to_its_commit_minus_lookback() {
        let mark = Mark {
            hold_back: at(100),
            frontier: None,
            position: Some("00000029000000100001".into()),
            watching_since: None,
            definition: None,
        };
        let max = lsn("0000002A000001F00003");
        let lookback = chrono::Duration::seconds(60);
        let read = CaptureRead {
            rows: Vec::new(),
            cursor: Cursor::Change(change("0000002A000001F00003", 1, "0000002A000001E80002", 2)),
            complete: true,
        };
        let next = next_mark(&mark, &read, max, Some(at(300)), lookback);
        assert_eq!(next.position.as_deref(), Some("0000002A000001F00003"));
        assert_eq!(next.hold_back, at(240));
        assert_eq!(next.frontier, None);

        // The line and the cursor never move back: a pass on a replica behind the last one
        // read starts at the mark's cursor and finds nothing up to its own, older, LSN.
        let nothing = CaptureRead {
            rows: Vec::new(),
            cursor: next.position.as_deref().unwrap().parse().unwrap(),
            complete: true,
        };
        let behind = next_mark(
            &next,
            &nothing,
            lsn("00000029000000100001"),
            Some(at(120)),
            lookback,
        );
        assert_eq!(behind.position, next.position);
        assert_eq!(behind.hold_back, at(240));

        // No commit time: the line stays.
        assert_eq!(
            next_mark(&mark, &read, max, None, lookback).hold_back,
            at(100)
        );
    }

    #[test]
    fn a_capped_pass_moves_only_the_cursor_to_its_last_row() {
        let mark = Mark::starting_at(at(100));
        let last = change("0000002A000001F00003", 1, "0000002A000001E80002", 2);
        let read = CaptureRead {
            rows: Vec::new(),
            cursor: Cursor::Change(last),
            complete: false,
        };
        let next = next_mark(
            &mark,
            &read,
            lsn("0000002B000000000001"),
            Some(at(300)),
            chrono::Duration::seconds(60),
        );
        assert_eq!(next.hold_back, at(100));
        assert_eq!(
            next.position.as_deref(),
            Some("0000002A000001F00003:1:0000002A000001E80002:2")
        );
    }
}
