//! Detection passes, engine-neutral: the page loop a poll-mode engine runs inside its one
//! consistent read of the replica, and the rules that move a schedule's [`Mark`].
//!
//! A pass reads, in `(change, key)` order from the hold-back line W:
//! - the **re-read region**, rows at or below the frontier F that the engine cannot rule out
//!   as committed since the previous pass (PostgreSQL: their `xmin` is not below the previous
//!   snapshot's; SQL Server: all of them). It is always read whole: the frontier and the
//!   hold-back line may only move past what this view of the replica was checked against.
//! - then **fresh rows**, above F, up to a budget per pass; the rest is read by the next pass,
//!   at once.
//!
//! The mark moves once every row's event is acknowledged: F to the last fresh row read; W to
//! the engine's proven line, never back, and after a pass that stopped at its budget no
//! further than its last row's change value, since it has not seen the rows after that one.

use chrono::{DateTime, Utc};

use crate::model::{ChangedRow, Changes, Mark, RowPosition};

/// Pages of fresh rows one pass may read; a busy table yields to the other schedules.
pub const PAGES_PER_PASS: usize = 20;

/// One row of a pass page, as an engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRow {
    pub row: ChangedRow,
    /// Above the frontier: new to the detector.
    pub fresh: bool,
}

/// What a pass read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassRead {
    pub rows: Vec<ChangedRow>,
    /// The frontier after the pass: its last fresh row, else the old frontier.
    pub frontier: Option<RowPosition>,
    /// False when the pass stopped at its budget of fresh rows.
    pub complete: bool,
}

/// A pass, page by page. The engine asks for the page after [`Pager::cursor`] (from the
/// hold-back line when `None`; up to `page_size` rows in `(change, key)` order) and hands it
/// to [`Pager::take`] until that says the pass is done.
#[derive(Debug)]
pub struct Pager {
    frontier: Option<RowPosition>,
    page_size: usize,
    max_fresh: usize,
    rows: Vec<ChangedRow>,
    cursor: Option<RowPosition>,
    fresh: usize,
    last_fresh: Option<RowPosition>,
    complete: bool,
}

impl Pager {
    pub fn new(frontier: Option<&RowPosition>, page_size: u32) -> Self {
        Pager {
            frontier: frontier.cloned(),
            page_size: page_size as usize,
            max_fresh: page_size as usize * PAGES_PER_PASS,
            rows: Vec::new(),
            cursor: None,
            fresh: 0,
            last_fresh: None,
            complete: false,
        }
    }

    /// Where the next page starts (after this row).
    pub fn cursor(&self) -> Option<&RowPosition> {
        self.cursor.as_ref()
    }

    /// Takes a page; true if the pass reads another.
    pub fn take(&mut self, page: Vec<PageRow>) -> bool {
        let full = page.len() >= self.page_size;
        for PageRow { row, fresh } in page {
            if fresh {
                self.fresh += 1;
                self.last_fresh = Some(row.position());
            }
            self.rows.push(row);
        }
        self.cursor = self.rows.last().map(ChangedRow::position);
        self.complete = !full;
        full && self.fresh < self.max_fresh
    }

    pub fn finish(self) -> PassRead {
        PassRead {
            rows: self.rows,
            frontier: self.last_fresh.or(self.frontier),
            complete: self.complete,
        }
    }
}

/// What a pass read, with the mark it leads to (see [`next_mark`]) and the replica's horizon.
pub fn changes(
    mark: &Mark,
    read: PassRead,
    horizon: Option<DateTime<Utc>>,
    proven: Option<DateTime<Utc>>,
    position: Option<String>,
) -> Changes {
    Changes {
        next: next_mark(mark, &read, proven, position),
        complete: read.complete,
        rows: read.rows,
        horizon,
    }
}

/// The mark after a pass: `proven` is the engine's hold-back line for this view of the
/// replica (`None`: nothing proven yet), `position` its engine-specific progress.
pub fn next_mark(
    mark: &Mark,
    read: &PassRead,
    proven: Option<DateTime<Utc>>,
    position: Option<String>,
) -> Mark {
    let read_up_to = match (read.complete, read.rows.last()) {
        (false, Some(last)) => Some(last.at),
        _ => None,
    };
    let line = match (proven, read_up_to) {
        (Some(proven), Some(read_up_to)) => Some(proven.min(read_up_to)),
        (proven, None) if read.complete => proven,
        _ => None,
    };
    let hold_back = line.map_or(mark.hold_back, |line| mark.hold_back.max(line));
    Mark {
        hold_back,
        frontier: read.frontier.clone(),
        position,
        ..mark.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn row(change: &str, key: &str, fresh: bool) -> PageRow {
        PageRow {
            row: ChangedRow {
                key: key.into(),
                change: change.into(),
                at: at(change.parse().unwrap_or_default()),
            },
            fresh,
        }
    }

    fn position(change: &str, key: &str) -> RowPosition {
        RowPosition {
            change: change.into(),
            key: key.into(),
        }
    }

    /// Serves `pages` in order, recording the cursor each was asked for.
    fn read(
        frontier: Option<&RowPosition>,
        page_size: u32,
        pages: Vec<Vec<PageRow>>,
    ) -> (PassRead, Vec<Option<RowPosition>>) {
        let mut pages: VecDeque<_> = pages.into();
        let mut cursors = Vec::new();
        let mut pager = Pager::new(frontier, page_size);
        loop {
            cursors.push(pager.cursor().cloned());
            if !pager.take(pages.pop_front().unwrap_or_default()) {
                break;
            }
        }
        (pager.finish(), cursors)
    }

    #[test]
    fn pages_follow_the_last_row_read_until_a_short_page() {
        let (read, cursors) = read(
            None,
            2,
            vec![
                vec![row("1", "a", true), row("1", "b", true)],
                vec![row("2", "a", true)],
            ],
        );
        assert_eq!(cursors, [None, Some(position("1", "b"))]);
        assert_eq!(read.rows.len(), 3);
        assert!(read.complete);
        assert_eq!(read.frontier, Some(position("2", "a")));
    }

    #[test]
    fn the_re_read_region_is_read_whole_and_only_fresh_rows_count_against_the_budget() {
        let page_size = 2;
        let frontier = position("5", "z");
        // More rows at or below the frontier than the whole budget of fresh rows.
        let old_pages = PAGES_PER_PASS + 3;
        let mut pages: Vec<Vec<PageRow>> = (0..old_pages)
            .map(|i| {
                vec![
                    row("3", &format!("{i:03}a"), false),
                    row("3", &format!("{i:03}b"), false),
                ]
            })
            .collect();
        let fresh_pages = PAGES_PER_PASS + 5;
        pages.extend((0..fresh_pages).map(|i| {
            vec![
                row("6", &format!("{i:03}a"), true),
                row("6", &format!("{i:03}b"), true),
            ]
        }));
        let (read, cursors) = read(Some(&frontier), page_size, pages);
        assert!(!read.complete, "the pass stops at its budget of fresh rows");
        assert_eq!(cursors.len(), old_pages + PAGES_PER_PASS);
        let last = read.rows.last().unwrap().position();
        assert_eq!(
            read.frontier,
            Some(last),
            "the frontier moves to the last fresh row"
        );
    }

    #[test]
    fn with_nothing_fresh_the_frontier_stays() {
        let frontier = position("5", "k");
        let (read, _) = read(Some(&frontier), 10, vec![vec![row("4", "a", false)]]);
        assert!(read.complete);
        assert_eq!(read.frontier, Some(frontier));
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_hold_back_line_moves_only_forward_and_a_capped_pass_no_further_than_it_read() {
        let mark = Mark::starting_at(at(10));
        let complete = PassRead {
            rows: vec![row("12", "a", true).row, row("15", "b", true).row],
            frontier: Some(position("15", "b")),
            complete: true,
        };
        let capped = PassRead {
            complete: false,
            ..complete.clone()
        };
        let moved = next_mark(&mark, &complete, Some(at(20)), Some("p".into()));
        assert_eq!(moved.hold_back, at(20));
        assert_eq!(moved.frontier, complete.frontier);
        assert_eq!(moved.position.as_deref(), Some("p"));
        assert_eq!(moved.watching_since, Some(at(10)), "kept from the start");
        assert_eq!(
            next_mark(&mark, &complete, Some(at(5)), None).hold_back,
            at(10)
        );
        assert_eq!(next_mark(&mark, &complete, None, None).hold_back, at(10));
        let stopped = next_mark(&mark, &capped, Some(at(20)), None);
        assert_eq!(
            stopped.hold_back,
            at(15),
            "a capped pass moves the line up to its last row, not past it"
        );
        assert_eq!(stopped.frontier, capped.frontier, "and moves the frontier");
        assert_eq!(
            next_mark(&mark, &capped, Some(at(13)), None).hold_back,
            at(13),
            "and never past the proven line"
        );
        assert_eq!(next_mark(&mark, &capped, None, None).hold_back, at(10));
    }
}
