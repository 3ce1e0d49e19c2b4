//! `heraldctl suppression list` and `heraldctl suppression remove`: the addresses a tenant's
//! messages must not go to (bounced, complained, unsubscribed, replied STOP), and taking one
//! off the list, recorded with who and why.

use herald_core::model::Channel;
use herald_core::ops::{Operator, SuppressionEntry};
use herald_core::store::NotifyDb;
use serde::Serialize;

use crate::output::{Report, or_dash, table, time};

#[derive(Serialize)]
pub struct SuppressionReport {
    entries: Vec<SuppressionEntry>,
}

pub async fn list(
    notify: &dyn NotifyDb,
    tenant: Option<&str>,
    address: Option<&str>,
    limit: u32,
) -> anyhow::Result<SuppressionReport> {
    Ok(SuppressionReport {
        entries: notify.suppression_entries(tenant, address, limit).await?,
    })
}

impl Report for SuppressionReport {
    fn text(&self) -> String {
        if self.entries.is_empty() {
            return "no address is suppressed\n".into();
        }
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.tenant.clone(),
                    e.channel.to_string(),
                    e.address.clone(),
                    e.schedule.clone().unwrap_or_else(|| "(all)".into()),
                    time(e.created_at),
                    or_dash(e.source.as_deref()),
                    e.reason.clone(),
                ]
            })
            .collect();
        table(
            &[
                "TENANT", "CHANNEL", "ADDRESS", "SCHEDULE", "SINCE", "SOURCE", "REASON",
            ],
            &rows,
        )
    }

    /// A list is information, not news.
    fn bad_news(&self) -> bool {
        false
    }
}

/// The suppression entry to take off: an address's for all of a tenant's schedules on a
/// channel, or for one schedule.
pub struct Target<'a> {
    pub tenant: &'a str,
    pub channel: Channel,
    pub address: &'a str,
    pub schedule: Option<&'a str>,
}

#[derive(Serialize)]
pub struct RemovalReport {
    tenant: String,
    channel: Channel,
    address: String,
    /// The schedule whose entry was asked for; `null`: the entry for all of them.
    schedule: Option<String>,
    /// The entry taken off the list; `null` if the address was not on it.
    removed: Option<SuppressionEntry>,
    by: Operator,
}

pub async fn remove(
    notify: &dyn NotifyDb,
    target: Target<'_>,
    by: Operator,
) -> anyhow::Result<RemovalReport> {
    let Target {
        tenant,
        channel,
        address,
        schedule,
    } = target;
    let removed = notify
        .remove_suppression(tenant, channel, address, schedule, &by)
        .await?;
    Ok(RemovalReport {
        tenant: tenant.to_owned(),
        channel,
        address: address.to_owned(),
        schedule: schedule.map(str::to_owned),
        removed,
        by,
    })
}

impl Report for RemovalReport {
    fn text(&self) -> String {
        match &self.removed {
            Some(entry) => format!(
                "{} ({} for {}{}) is no longer suppressed; it was since {}: {} (removed by {})\n",
                entry.address,
                entry.channel,
                entry.tenant,
                scope(entry.schedule.as_deref()),
                time(entry.created_at),
                entry.reason,
                self.by.name
            ),
            None => format!(
                "{} is not on {}'s suppression list for {}{}: nothing removed\n",
                self.address,
                self.tenant,
                self.channel,
                scope(self.schedule.as_deref())
            ),
        }
    }

    /// Nothing to remove is a refusal.
    fn bad_news(&self) -> bool {
        self.removed.is_none()
    }
}

/// `, schedule <name>` for a schedule's entry; nothing for the tenant-wide one.
fn scope(schedule: Option<&str>) -> String {
    schedule.map_or_else(String::new, |name| format!(", schedule {name}"))
}
