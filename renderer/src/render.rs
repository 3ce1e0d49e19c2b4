//! Turning one change into one message: the schedule's merge function on the replica gives
//! the recipient and merge fields, the schedule's template (Tera) gives the content.
//!
//! Every outcome is a `Rendering` to record — `queued`, `skipped`, `render_retry` or
//! `render_failed`, with its reason — except an unreachable database, which is returned as an
//! error so the caller retries the whole change later and records nothing half-done.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use herald_core::config::RendererSettings;
use herald_core::model::{
    Channel, MergeFunction, MessageKey, MessageStatus, Rendering, Schedule, SourceTable, Template,
};
use herald_core::store::{
    Invalid, MergeCall, MergeRow, NotifyDb, SourceDb, StoreResult, TableQueries, VersionCheck,
};
use herald_core::telemetry::error_chain;

use crate::metrics::RendererMetrics;
use crate::templates::TemplateCache;

/// How long a schedule whose merge function was slow has its new changes rendered by the
/// retry loop (each slow call there extends it).
const SLOW_FOR: Duration = Duration::from_secs(60);

/// How long a schedule or template read from the notification database is reused: an
/// admin's edit takes effect within this.
const REUSE_FOR: Duration = Duration::from_secs(5);
/// Entries a [`Recent`] keeps at most.
const RECENT_MAX: usize = 1024;

/// Merge-output columns that address the message rather than fill the template.
const RECIPIENT: &str = "recipient";
const RECIPIENT_NAME: &str = "recipient_name";
const LOCALE: &str = "locale";

pub struct Renderer {
    source: Arc<dyn SourceDb>,
    notify: Arc<dyn NotifyDb>,
    settings: RendererSettings,
    compiled: TemplateCache,
    schedules: Recent<i64, Option<Schedule>>,
    /// By (tenant, template name, locale).
    templates: Recent<(String, String, String), Option<Template>>,
    merge_calls: Mutex<HashMap<MergeFunction, MergeCall>>,
    tables: Mutex<HashMap<SourceTable, TableQueries>>,
    /// Schedules whose merge function is slow, until when ([`SLOW_FOR`] after its last slow
    /// call).
    slow: Mutex<HashMap<i64, Instant>>,
    metrics: Arc<RendererMetrics>,
}

/// Where changes come from: the topic (the consumer), or the `render_retry` rows (the retry
/// loop). A slow schedule's changes from the topic wait for the retry loop, which calls its
/// merge function a few at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Events,
    Retries,
}

/// A change to render: its message's identity, and what its event said.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: MessageKey,
    pub channel: Channel,
    /// Counts from 1.
    pub attempt: i32,
    pub detected_at: DateTime<Utc>,
}

/// Why a change could not be rendered this time.
enum Failure {
    /// Worth another attempt later (the merge function failed, the template is missing).
    Transient(String),
    /// Not the message's fault, and no attempt (the replica has not applied the change yet,
    /// the schedule's merge function is slow): retried at a steady pace, however long it
    /// takes.
    Waiting(String),
    /// Will fail the same way every time (bad template, bad merge output).
    Permanent(String),
    /// Nothing to send.
    Skip(String),
}

impl Renderer {
    pub fn new(
        source: Arc<dyn SourceDb>,
        notify: Arc<dyn NotifyDb>,
        settings: RendererSettings,
        metrics: Arc<RendererMetrics>,
    ) -> Self {
        Renderer {
            metrics,
            source,
            notify,
            settings,
            compiled: TemplateCache::default(),
            schedules: Recent::default(),
            templates: Recent::default(),
            merge_calls: Mutex::default(),
            tables: Mutex::default(),
            slow: Mutex::default(),
        }
    }

    pub fn notify(&self) -> &dyn NotifyDb {
        self.notify.as_ref()
    }

    pub fn settings(&self) -> &RendererSettings {
        &self.settings
    }

    pub fn metrics(&self) -> &RendererMetrics {
        &self.metrics
    }

    /// Renders each change, in order. The changes of one schedule share their round trips to
    /// the replica: one version check for them all, and one merge statement where the engine
    /// batches merge calls (else the calls run `merge_concurrency` at a time). A slow
    /// schedule's changes from the topic wait for the retry loop (see [`Lane`]). Errs only
    /// when a database is unavailable: nothing is recorded, and the caller retries the batch.
    pub async fn render_all(&self, changes: &[Change], lane: Lane) -> StoreResult<Vec<Rendering>> {
        let started = Instant::now();
        let mut by_schedule: HashMap<i64, Vec<usize>> = HashMap::new();
        for (index, change) in changes.iter().enumerate() {
            by_schedule
                .entry(change.key.schedule_id)
                .or_default()
                .push(index);
        }
        let groups =
            futures::future::try_join_all(by_schedule.into_iter().map(|(schedule_id, group)| {
                self.render_schedule(schedule_id, changes, group, lane)
            }))
            .await?;
        let mut rendered: Vec<Option<Rendering>> = vec![None; changes.len()];
        for (index, outcome) in groups.into_iter().flatten() {
            rendered[index] = Some(self.conclude(&changes[index], outcome));
        }
        self.metrics.batch_took(started.elapsed());
        Ok(rendered
            .into_iter()
            .map(|rendering| rendering.expect("every change rendered"))
            .collect())
    }

    /// The outcome as the rendering to record: a transient failure counts against the
    /// attempts.
    fn conclude(&self, change: &Change, outcome: Result<Rendering, Failure>) -> Rendering {
        let rendering = match outcome {
            Ok(rendering) => rendering,
            Err(failure @ Failure::Transient(_)) => final_on_last_attempt(
                failure.into_rendering(),
                change.attempt,
                self.settings.max_render_attempts,
            ),
            Err(failure) => failure.into_rendering(),
        };
        let key = &change.key;
        self.metrics.rendered(&key.tenant, rendering.status);
        match rendering.status {
            MessageStatus::Queued => {
                tracing::debug!(tenant = %key.tenant, schedule_id = key.schedule_id, source_key = %key.source_key, "rendered")
            }
            // Waiting is no failure: a replica behind, a slow merge function's turn.
            status if rendering.waiting => {
                tracing::debug!(tenant = %key.tenant, schedule_id = key.schedule_id, source_key = %key.source_key, %status, reason = rendering.error.as_deref().unwrap_or_default(), "waiting")
            }
            status => {
                tracing::warn!(tenant = %key.tenant, schedule_id = key.schedule_id, source_key = %key.source_key, attempt = change.attempt, %status, reason = rendering.error.as_deref().unwrap_or_default(), "not rendered")
            }
        }
        rendering
    }

    /// The changes of one schedule: `changes[i]` for each `i` of `group`.
    async fn render_schedule(
        &self,
        schedule_id: i64,
        changes: &[Change],
        group: Vec<usize>,
        lane: Lane,
    ) -> StoreResult<Vec<(usize, Result<Rendering, Failure>)>> {
        let Some(schedule) = self.schedule(schedule_id).await? else {
            let gone = || Failure::Permanent(format!("schedule {schedule_id} no longer exists"));
            return Ok(group.into_iter().map(|i| (i, Err(gone()))).collect());
        };
        let checks = self.check_versions(&schedule, changes, &group).await?;
        let mut outcomes = Vec::with_capacity(group.len());
        let mut current = Vec::with_capacity(group.len());
        for (index, failure) in group.into_iter().zip(checks) {
            match failure {
                Some(failure) => outcomes.push((index, Err(failure))),
                None => current.push(index),
            }
        }
        let keys: Vec<&str> = current
            .iter()
            .map(|&i| changes[i].key.source_key.as_str())
            .collect();
        let merged = self.merge_rows(&schedule, &keys, lane).await?;
        for (index, row) in current.into_iter().zip(merged) {
            let outcome = match row {
                Ok(row) => self.fill(&schedule, changes[index].channel, row).await?,
                Err(failure) => Err(failure),
            };
            outcomes.push((index, outcome));
        }
        Ok(outcomes)
    }

    async fn schedule(&self, schedule_id: i64) -> StoreResult<Option<Schedule>> {
        self.schedules
            .get_or_read(schedule_id, || self.notify.schedule(schedule_id))
            .await
    }

    async fn template(&self, schedule: &Schedule, locale: &str) -> StoreResult<Option<Template>> {
        let key = (
            schedule.tenant.clone(),
            schedule.template_name.clone(),
            locale.to_owned(),
        );
        self.templates
            .get_or_read(key, || {
                self.notify
                    .template(&schedule.tenant, &schedule.template_name, locale)
            })
            .await
    }

    /// Whether the replica shows each event's version of its row, in one round trip (one per
    /// change only if the database refuses the batch: one bad event fails alone). An older
    /// version, or no row yet, means the replica is behind the change: try again later. A
    /// newer version supersedes the change (the newer one has its own event). A row still
    /// absent after `absent_row_timeout` was deleted, or never reached this replica: skipped.
    async fn check_versions(
        &self,
        schedule: &Schedule,
        changes: &[Change],
        group: &[usize],
    ) -> StoreResult<Vec<Option<Failure>>> {
        let table = cached(&self.tables, &schedule.source, || {
            self.source.resolve_table(&schedule.source)
        })
        .await?;
        // A table that no longer resolves is the merge call's to report.
        let Ok(table) = table else {
            return Ok(group.iter().map(|_| None).collect());
        };
        let events: Vec<(&str, &str)> = group
            .iter()
            .map(|&i| {
                let key = &changes[i].key;
                (key.source_key.as_str(), key.change_version.as_str())
            })
            .collect();
        let checks = match self.source.compare_versions(&table, &events).await {
            Ok(checks) => checks.into_iter().map(Ok).collect(),
            Err(error) if error.is_unavailable() => return Err(error),
            Err(error) if events.len() == 1 => vec![Err(error)],
            Err(_) => {
                let mut checks = Vec::with_capacity(events.len());
                for event in &events {
                    checks.push(
                        match self.source.compare_versions(&table, &[*event]).await {
                            Ok(mut check) => Ok(check.pop().flatten()),
                            Err(error) if error.is_unavailable() => return Err(error),
                            Err(error) => Err(error),
                        },
                    );
                }
                checks
            }
        };
        Ok(group
            .iter()
            .zip(checks)
            .map(|(&i, check)| match check {
                Ok(check) => self.version_failure(&changes[i], check),
                Err(error) => Some(Failure::Transient(format!(
                    "the version check failed: {}",
                    error_chain(&error)
                ))),
            })
            .collect())
    }

    /// Why the change cannot be rendered from what the replica shows, if it cannot.
    fn version_failure(&self, change: &Change, check: Option<VersionCheck>) -> Option<Failure> {
        let version = &change.key.change_version;
        match check {
            Some(VersionCheck {
                ordering: Ordering::Equal,
                ..
            }) => None,
            Some(VersionCheck {
                ordering: Ordering::Greater,
                current,
            }) => Some(Failure::Skip(format!(
                "superseded by a newer change of the row ({})",
                current.as_deref().unwrap_or("its change value is now NULL")
            ))),
            Some(VersionCheck {
                ordering: Ordering::Less,
                current,
            }) => Some(Failure::Waiting(format!(
                "the replica is behind this change: it shows version {} of the row, not {version} yet",
                current.as_deref().unwrap_or_default()
            ))),
            None => {
                let absent_for = (Utc::now() - change.detected_at)
                    .to_std()
                    .unwrap_or_default();
                if absent_for > self.settings.absent_row_timeout {
                    Some(Failure::Skip(format!(
                        "the source row is not on the replica {}s after the change was \
                         detected: it was deleted, or the replica is that far behind",
                        absent_for.as_secs()
                    )))
                } else {
                    Some(Failure::Waiting(format!(
                        "the replica does not show the row yet (version {version}): it is behind \
                         the change, or the row was deleted"
                    )))
                }
            }
        }
    }

    /// The merge row for each key: all in one statement where the engine batches merge
    /// calls; one call per key (`merge_concurrency` at a time) otherwise, and when the batch
    /// failed or timed out, so that one failing or hanging key holds up only its own message.
    ///
    /// A call (or batch) slower than `slow_merge` makes the schedule slow for [`SLOW_FOR`]:
    /// from the topic its keys then wait for the retry loop (those not called yet, and all
    /// of the next batches'); the retry loop calls them a quarter of `merge_concurrency` at a
    /// time, starting calls for `merge_timeout` a round, the rest waiting for the next.
    async fn merge_rows(
        &self,
        schedule: &Schedule,
        keys: &[&str],
        lane: Lane,
    ) -> StoreResult<Vec<Result<MergeRow, Failure>>> {
        if lane == Lane::Events && self.is_slow(schedule.id) {
            return Ok(keys.iter().map(|_| Err(self.slow_failure())).collect());
        }
        let call = match cached(&self.merge_calls, &schedule.merge, || {
            self.source.resolve_merge(&schedule.merge)
        })
        .await?
        {
            Ok(call) => call,
            Err(invalid) => {
                return Ok(keys
                    .iter()
                    .map(|_| Err(Failure::Transient(invalid.clone())))
                    .collect());
            }
        };
        let timeout = self.settings.merge_timeout;
        if call.batched && keys.len() > 1 && !self.is_slow(schedule.id) {
            let started = Instant::now();
            let merged = self.source.merge(&call, keys, timeout).await;
            let took = started.elapsed();
            self.metrics.merge_took(took);
            // A batch holds up the others as long as it takes: slow if it took over
            // `slow_merge` (or timed out), unless its keys were quick (a twentieth of
            // `slow_merge` each, at most) and there were just many of them.
            let per_key = took / u32::try_from(keys.len()).unwrap_or(u32::MAX);
            let timed_out = merged.as_ref().is_err_and(|error| error.is_timeout());
            if timed_out || per_key > self.settings.slow_merge / 20 {
                self.note_speed(schedule, took);
            }
            if lane == Lane::Events && self.is_slow(schedule.id) && merged.is_err() {
                return Ok(keys.iter().map(|_| Err(self.slow_failure())).collect());
            }
            match merged {
                Ok(merged) => {
                    return Ok(keys
                        .iter()
                        .zip(merged)
                        .map(|(key, rows)| one_row(rows, key))
                        .collect());
                }
                Err(error) if error.is_unavailable() && !error.is_timeout() => return Err(error),
                Err(error) => {
                    tracing::info!(keys = keys.len(), error = %error_chain(&error), "a batched merge call failed; calling the merge function once per key")
                }
            }
        }
        let concurrency = if self.is_slow(schedule.id) {
            (self.settings.merge_concurrency / 4).max(1)
        } else {
            self.settings.merge_concurrency
        };
        let budget_ends = Instant::now() + timeout;
        let call = &call;
        let calls: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(n, key)| async move {
                // Started as a slot frees: past the first slots, a key whose schedule turned
                // out slow waits for the retry loop (from the topic), or for the next round
                // (in the retry loop, once the round's budget is spent).
                let over = || match lane {
                    Lane::Events => self.is_slow(schedule.id),
                    Lane::Retries => Instant::now() >= budget_ends,
                };
                if n >= concurrency && over() {
                    return Ok(Err(self.slow_failure()));
                }
                self.merge_one(schedule, call, key).await
            })
            .collect();
        futures::stream::iter(calls)
            .buffered(concurrency)
            .try_collect()
            .await
    }

    fn is_slow(&self, schedule_id: i64) -> bool {
        let mut slow = self.slow.lock().expect("lock");
        match slow.get(&schedule_id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                slow.remove(&schedule_id);
                tracing::info!(
                    schedule_id,
                    "the merge function's slow spell is over: its changes are rendered as they come again"
                );
                false
            }
            None => false,
        }
    }

    /// Marks the schedule slow if a merge call (or batch) took `took`, longer than
    /// `slow_merge`.
    fn note_speed(&self, schedule: &Schedule, took: Duration) {
        if took <= self.settings.slow_merge {
            return;
        }
        let until = Instant::now() + SLOW_FOR;
        if self
            .slow
            .lock()
            .expect("lock")
            .insert(schedule.id, until)
            .is_none()
        {
            self.metrics.slow_merge(&schedule.tenant);
            tracing::warn!(
                schedule_id = schedule.id,
                tenant = %schedule.tenant,
                took_ms = took.as_millis() as u64,
                "the merge function is slow: this schedule's changes are rendered by the retry loop, a few at a time, so that they hold up no one else's"
            );
        }
    }

    fn slow_failure(&self) -> Failure {
        Failure::Waiting(format!(
            "the schedule's merge function is slow (a call took over {:?}): rendered by the \
             retry loop, so that it holds up no one else",
            self.settings.slow_merge
        ))
    }

    /// Calls the merge function for one key.
    async fn merge_one(
        &self,
        schedule: &Schedule,
        call: &MergeCall,
        key: &str,
    ) -> StoreResult<Result<MergeRow, Failure>> {
        let timeout = self.settings.merge_timeout;
        let started = Instant::now();
        let merged = self.source.merge(call, &[key], timeout).await;
        let took = started.elapsed();
        self.metrics.merge_took(took);
        self.note_speed(schedule, took);
        match merged {
            Ok(mut merged) => Ok(one_row(merged.pop().unwrap_or_default(), key)),
            // Cancelled: this message waits, the others go on.
            Err(error) if error.is_timeout() => Ok(Err(Failure::Transient(format!(
                "the merge function timed out (merge_timeout {timeout:?}): {}",
                error_chain(&error)
            )))),
            Err(error) => {
                // The function may have been replaced: resolve it again next time.
                self.merge_calls
                    .lock()
                    .expect("lock")
                    .remove(&schedule.merge);
                if error.is_unavailable() {
                    return Err(error);
                }
                Ok(Err(Failure::Transient(format!(
                    "the merge function failed: {}",
                    error_chain(&error)
                ))))
            }
        }
    }

    /// Fills the schedule's template with the merge row.
    async fn fill(
        &self,
        schedule: &Schedule,
        channel: Channel,
        mut row: MergeRow,
    ) -> StoreResult<Result<Rendering, Failure>> {
        if !row.contains_key(RECIPIENT) {
            let columns: Vec<&str> = row.keys().map(String::as_str).collect();
            return Ok(Err(Failure::Permanent(format!(
                "the merge function returned no `{RECIPIENT}` column (it returned: {})",
                columns.join(", ")
            ))));
        }
        let Some(recipient) = text(&row, RECIPIENT) else {
            return Ok(Err(Failure::Skip(
                "the merge function named no recipient".into(),
            )));
        };
        let recipient_name = text(&row, RECIPIENT_NAME);
        let locale = text(&row, LOCALE).unwrap_or_else(|| "en".into());
        let Some(template) = self.template(schedule, &locale).await? else {
            return Ok(Err(Failure::Transient(format!(
                "template {:?} of tenant {:?} does not exist",
                schedule.template_name, schedule.tenant
            ))));
        };
        if channel == Channel::Email && template.subject.is_none() {
            return Ok(Err(Failure::Permanent(format!(
                "template {:?} ({}) has no subject, which an email needs",
                schedule.template_name, template.locale
            ))));
        }
        row.insert(RECIPIENT.into(), recipient.clone().into());
        row.insert(LOCALE.into(), locale.clone().into());
        let content = match self.compiled.render(&template, &row) {
            Ok(content) => content,
            Err(error) => {
                return Ok(Err(Failure::Permanent(format!(
                    "template {:?} ({}) did not render: {}",
                    schedule.template_name,
                    template.locale,
                    error_chain(&error)
                ))));
            }
        };
        Ok(Ok(Rendering {
            status: MessageStatus::Queued,
            recipient: Some(recipient),
            recipient_name,
            locale: Some(locale),
            subject: content.subject,
            body_html: content.body_html,
            body_text: Some(content.body_text),
            error: None,
            waiting: false,
        }))
    }

    /// How long until the message is due: a `render_retry` after its backoff (a steady
    /// `retry_backoff` while the replica is behind), anything else (a queued message in
    /// particular) at once.
    pub fn due_in(&self, rendering: &Rendering, attempt: i32) -> Duration {
        due_in(rendering, attempt, self.settings.retry_backoff)
    }
}

fn due_in(rendering: &Rendering, attempt: i32, backoff: Duration) -> Duration {
    match rendering.status {
        MessageStatus::RenderRetry if rendering.waiting => backoff,
        MessageStatus::RenderRetry => herald_core::backoff::delay(attempt, backoff, backoff * 32),
        _ => Duration::ZERO,
    }
}

/// Rows read from the notification database, reused for [`REUSE_FOR`] so that a batch of
/// events does not read the same schedule or template once per event. At most
/// [`RECENT_MAX`] are kept (template keys hold a locale the merge function chose).
struct Recent<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            entries: Mutex::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Recent<K, V> {
    async fn get_or_read<F, Fut>(&self, key: K, read: F) -> StoreResult<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<V>>,
    {
        if let Some((at, value)) = self.entries.lock().expect("lock").get(&key)
            && at.elapsed() < REUSE_FOR
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        let mut entries = self.entries.lock().expect("lock");
        if entries.len() >= RECENT_MAX {
            entries.retain(|_, (at, _)| at.elapsed() < REUSE_FOR);
            if entries.len() >= RECENT_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value.clone()));
        Ok(value)
    }
}

/// A catalog lookup, remembered once it succeeds.
async fn cached<K, V, F, Fut>(
    cache: &Mutex<HashMap<K, V>>,
    key: &K,
    resolve: F,
) -> StoreResult<Result<V, Invalid>>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = StoreResult<Result<V, Invalid>>>,
{
    if let Some(value) = cache.lock().expect("lock").get(key) {
        return Ok(Ok(value.clone()));
    }
    let resolved = resolve().await?;
    if let Ok(value) = &resolved {
        cache
            .lock()
            .expect("lock")
            .insert(key.clone(), value.clone());
    }
    Ok(resolved)
}

/// A key's merge rows as its one row: none is nothing to send, more than one a mistake.
fn one_row(mut rows: Vec<MergeRow>, key: &str) -> Result<MergeRow, Failure> {
    match rows.len() {
        0 => Err(Failure::Skip(format!(
            "the merge function returned no row for key {key}"
        ))),
        1 => Ok(rows.remove(0)),
        _ => Err(Failure::Permanent(format!(
            "the merge function returned more than one row for key {key}; it must return at most one"
        ))),
    }
}

/// A merge column as text: strings as they are, other JSON values in their JSON form; null
/// and empty strings are absent.
fn text(row: &MergeRow, column: &str) -> Option<String> {
    match row.get(column)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.trim().is_empty() => None,
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        other => Some(other.to_string()),
    }
}

impl Failure {
    fn into_rendering(self) -> Rendering {
        match self {
            Failure::Transient(reason) => {
                Rendering::without_content(MessageStatus::RenderRetry, reason)
            }
            Failure::Waiting(reason) => Rendering {
                waiting: true,
                ..Rendering::without_content(MessageStatus::RenderRetry, reason)
            },
            Failure::Permanent(reason) => {
                Rendering::without_content(MessageStatus::RenderFailed, reason)
            }
            Failure::Skip(reason) => Rendering::without_content(MessageStatus::Skipped, reason),
        }
    }
}

/// A `render_retry` on the last allowed attempt is final: `render_failed`.
fn final_on_last_attempt(mut rendering: Rendering, attempt: i32, max_attempts: i32) -> Rendering {
    if rendering.status == MessageStatus::RenderRetry && attempt >= max_attempts {
        rendering.status = MessageStatus::RenderFailed;
        let reason = rendering.error.take().unwrap_or_default();
        rendering.error = Some(format!("gave up after {attempt} attempts: {reason}"));
    }
    rendering
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recent_rows_are_bounded_whatever_the_keys() {
        let recent: Recent<String, usize> = Recent::default();
        for n in 0..3 * RECENT_MAX {
            let got = recent
                .get_or_read(format!("locale-{n}"), || async move { Ok(n) })
                .await
                .unwrap();
            assert_eq!(got, n);
        }
        assert!(recent.entries.lock().unwrap().len() <= RECENT_MAX);
        // A key read within REUSE_FOR is not read again.
        let again = recent
            .get_or_read(format!("locale-{}", 3 * RECENT_MAX - 1), || async { Ok(0) })
            .await
            .unwrap();
        assert_eq!(again, 3 * RECENT_MAX - 1);
    }

    #[test]
    fn only_a_render_retry_waits_and_a_waiting_at_a_steady_pace() {
        let backoff = Duration::from_secs(5);
        for status in [
            MessageStatus::Queued,
            MessageStatus::Skipped,
            MessageStatus::RenderFailed,
        ] {
            let rendering = Rendering::without_content(status, "");
            assert_eq!(due_in(&rendering, 1, backoff), Duration::ZERO, "{status}");
        }
        let retry = Rendering::without_content(MessageStatus::RenderRetry, "merge failed");
        let wait = due_in(&retry, 2, backoff);
        assert!(wait >= backoff && wait <= backoff * 2, "{wait:?}");
        let behind = Rendering {
            waiting: true,
            ..retry
        };
        assert_eq!(due_in(&behind, 9, backoff), backoff);
    }

    #[test]
    fn the_last_attempt_of_a_render_retry_is_final() {
        let retry = Rendering::without_content(MessageStatus::RenderRetry, "merge failed");
        let last = final_on_last_attempt(retry.clone(), 5, 5);
        assert_eq!(last.status, MessageStatus::RenderFailed);
        assert_eq!(
            last.error.as_deref(),
            Some("gave up after 5 attempts: merge failed")
        );
        assert_eq!(
            final_on_last_attempt(retry, 4, 5).status,
            MessageStatus::RenderRetry
        );
    }
}
