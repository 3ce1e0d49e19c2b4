//! End-to-end scenarios: change-detector → Kafka → renderer → queue → sender → provider,
//! with real PostgreSQL, a real Kafka-protocol broker and real HTTP. Each test builds its own
//! `Stack` (fresh databases, topic, group and fake provider), so tests run in parallel.

mod crash;
mod delivery;
mod pipeline;
mod replay;
mod schedules;

use std::time::Duration;

use herald_tests::Stack;

/// Generous bounds: CI machines are small and run tests side by side.
pub const SOON: Duration = Duration::from_secs(60);

pub struct Contact<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub phone: &'a str,
    pub locale: &'a str,
}

impl Default for Contact<'_> {
    fn default() -> Self {
        Contact {
            first_name: "Ada",
            last_name: "Lovelace",
            email: "ada@example.com",
            phone: "+15550000001",
            locale: "en",
        }
    }
}

pub async fn insert_contact(stack: &Stack, contact: &Contact<'_>) -> anyhow::Result<i64> {
    let row = stack
        .source
        .query_one(
            "INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
             VALUES ($1, $2, $3, $4, $5) RETURNING contact_id",
            &[
                &contact.first_name,
                &contact.last_name,
                &contact.email,
                &contact.phone,
                &contact.locale,
            ],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn insert_appointment(
    stack: &Stack,
    contact_id: i64,
    location: &str,
) -> anyhow::Result<i64> {
    let row = stack
        .source
        .query_one(
            "INSERT INTO crm.appointment (contact_id, starts_at, location)
             VALUES ($1, '2026-12-01 09:30+00', $2) RETURNING appointment_id",
            &[&contact_id, &location],
        )
        .await?;
    Ok(row.get(0))
}

/// Waits until the detector has set a starting point for `schedules` schedules; rows
/// committed before that are not the detector's to notify.
pub async fn wait_until_watching(stack: &Stack, schedules: i64) -> anyhow::Result<()> {
    stack
        .wait_for_count(
            "SELECT count(*) FROM detector_watermark WHERE change_value IS NOT NULL",
            schedules,
            SOON,
        )
        .await
}

pub async fn schedule_id(stack: &Stack, name: &str) -> anyhow::Result<i64> {
    Ok(stack
        .notify
        .query_one("SELECT schedule_id FROM schedule WHERE name = $1", &[&name])
        .await?
        .get(0))
}
