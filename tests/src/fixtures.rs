//! The demo source's rows and the notification database's state, in each engine's SQL, so
//! the scenarios read the same whichever engine runs them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Db, Engine, Stack, Value};

/// Generous bounds: CI machines are small and run tests side by side.
pub const SOON: Duration = Duration::from_secs(60);

pub struct Contact<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: Option<&'a str>,
    pub phone: &'a str,
    pub locale: &'a str,
}

impl Default for Contact<'_> {
    fn default() -> Self {
        Contact {
            first_name: "Ada",
            last_name: "Lovelace",
            email: Some("ada@example.com"),
            phone: "+15550000001",
            locale: "en",
        }
    }
}

impl Stack {
    /// Inserts a contact in the source; returns its key.
    pub async fn insert_contact(&self, contact: &Contact<'_>) -> anyhow::Result<i64> {
        self.insert_contact_on(&self.source, contact).await
    }

    /// Inserts a contact with this address (the rest as [`Contact::default`]); returns its key.
    pub async fn insert_contact_to(&self, email: &str) -> anyhow::Result<i64> {
        self.insert_contact(&Contact {
            email: Some(email),
            ..Contact::default()
        })
        .await
    }

    /// Adds a second tenant, `globex`, with a table of its own in the source
    /// (`crm.globex_customer`, `tests/fixtures/<engine>/second_tenant.sql`) and an active
    /// welcome email schedule on it.
    pub async fn add_second_tenant(&self) -> anyhow::Result<()> {
        self.apply_source_fixture("second_tenant").await?;
        self.notify
            .batch(
                "INSERT INTO template (tenant, name, locale, subject, body_html, body_text)
                 VALUES ('globex', 'welcome', 'en', 'Welcome to Globex, {{ first_name }}',
                         '<p>Welcome to Globex.</p>', 'Welcome to Globex.');
                 INSERT INTO schedule (tenant, name, channel, source_schema, source_table,
                                       key_column, change_column, merge_schema, merge_function,
                                       template_name)
                 VALUES ('globex', 'welcome-email', 'email', 'crm', 'globex_customer',
                         'customer_id', 'created_at', 'crm', 'globex_welcome', 'welcome');",
            )
            .await
    }

    /// Inserts a globex customer (see [`Stack::add_second_tenant`]) in its own transaction.
    pub async fn insert_globex_customer(&self, email: &str) -> anyhow::Result<()> {
        self.source
            .execute(
                "INSERT INTO crm.globex_customer (email, name) VALUES ($1, 'Customer')",
                &[email.into()],
            )
            .await?;
        Ok(())
    }

    /// Inserts `count` contacts in one statement (`flood-<n>@example.com`), as an import does.
    pub async fn insert_contacts(&self, count: i64) -> anyhow::Result<()> {
        let sql = match self.engine {
            Engine::Postgres => {
                "INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
                 SELECT 'Flood', 'No ' || n, 'flood-' || n || '@example.com', '+15550000001', 'en'
                   FROM generate_series(1, $1::bigint) AS n"
            }
            Engine::Mssql => {
                "WITH numbers AS (
                     SELECT TOP ($1) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n
                       FROM sys.all_objects AS a CROSS JOIN sys.all_objects AS b)
                 INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
                 SELECT N'Flood', CONCAT(N'No ', n), CONCAT(N'flood-', n, N'@example.com'),
                        N'+15550000001', N'en'
                   FROM numbers"
            }
        };
        self.source.execute(sql, &[count.into()]).await?;
        Ok(())
    }

    /// Inserts a contact through `db`, a connection to the source (maybe in a transaction);
    /// returns its key.
    pub async fn insert_contact_on(&self, db: &Db, contact: &Contact<'_>) -> anyhow::Result<i64> {
        let sql = match self.engine {
            Engine::Postgres => {
                "INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
                 VALUES ($1, $2, $3, $4, $5) RETURNING contact_id"
            }
            Engine::Mssql => {
                "INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
                 OUTPUT inserted.contact_id VALUES ($1, $2, $3, $4, $5)"
            }
        };
        let email = contact.email.map_or(Value::Null, Value::from);
        let row = db
            .query_one(
                sql,
                &[
                    contact.first_name.into(),
                    contact.last_name.into(),
                    email,
                    contact.phone.into(),
                    contact.locale.into(),
                ],
            )
            .await?;
        Ok(row.int(0))
    }

    /// Inserts an appointment at 2026-12-01 09:30 UTC; returns its key.
    pub async fn insert_appointment(&self, contact_id: i64, location: &str) -> anyhow::Result<i64> {
        let sql = match self.engine {
            Engine::Postgres => {
                "INSERT INTO crm.appointment (contact_id, starts_at, location)
                 VALUES ($1, '2026-12-01 09:30+00', $2) RETURNING appointment_id"
            }
            Engine::Mssql => {
                "INSERT INTO crm.appointment (contact_id, starts_at, location)
                 OUTPUT inserted.appointment_id VALUES ($1, '2026-12-01T09:30:00', $2)"
            }
        };
        let row = self
            .source
            .query_one(sql, &[contact_id.into(), location.into()])
            .await?;
        Ok(row.int(0))
    }

    /// A contact's `created_at` in the source's own text form: the change version the
    /// detector gives its insert.
    pub async fn contact_created_version(&self, contact_id: i64) -> anyhow::Result<String> {
        let sql = match self.engine {
            Engine::Postgres => "SELECT created_at::text FROM crm.contact WHERE contact_id = $1",
            Engine::Mssql => {
                "SELECT CONVERT(nvarchar(40), created_at, 126) FROM crm.contact
                  WHERE contact_id = $1"
            }
        };
        Ok(self
            .source
            .query_one(sql, &[contact_id.into()])
            .await?
            .text(0))
    }

    pub async fn move_appointment(
        &self,
        appointment_id: i64,
        location: &str,
    ) -> anyhow::Result<()> {
        self.source
            .execute(
                "UPDATE crm.appointment SET location = $1 WHERE appointment_id = $2",
                &[location.into(), appointment_id.into()],
            )
            .await?;
        Ok(())
    }

    /// [`Stack::table_reads`] once the count has stopped moving: engines publish their
    /// statistics with a delay of about a second.
    pub async fn settled_table_reads(&self, table: &str) -> anyhow::Result<i64> {
        let mut last = self.table_reads(table).await?;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = self.table_reads(table).await?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        anyhow::bail!("the read count of {table} keeps moving")
    }

    /// How often the engine has read a source table (scans, seeks, lookups), as its own
    /// statistics count it.
    pub async fn table_reads(&self, table: &str) -> anyhow::Result<i64> {
        match self.engine {
            Engine::Postgres => {
                self.source.batch("SELECT pg_stat_clear_snapshot()").await?;
                self.source
                    .count(
                        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
                           FROM pg_stat_user_tables
                          WHERE schemaname = 'crm' AND relname = $1",
                        &[table.into()],
                    )
                    .await
            }
            Engine::Mssql => self
                .source
                .count(
                    "SELECT CAST(ISNULL(SUM(user_seeks + user_scans + user_lookups), 0) AS bigint)
                           FROM sys.dm_db_index_usage_stats
                          WHERE database_id = DB_ID() AND object_id = OBJECT_ID('crm.' + $1)",
                    &[table.into()],
                )
                .await,
        }
    }

    /// Waits until the detector has set a starting point for `schedules` schedules; rows
    /// committed before that are not the detector's to notify.
    pub async fn wait_until_watching(&self, schedules: i64) -> anyhow::Result<()> {
        self.wait_for_count(
            "SELECT count(*) FROM detector_watermark WHERE hold_back IS NOT NULL",
            schedules,
            SOON,
        )
        .await
    }

    /// Adds `acme/no-table`, an active email schedule on `crm.invoice`, a table the source
    /// does not have: the detector records it in error, and polls the others.
    pub async fn add_schedule_without_table(&self) -> anyhow::Result<()> {
        self.notify
            .batch(
                "INSERT INTO schedule (tenant, name, channel, source_schema, source_table,
                                       key_column, change_column, merge_schema, merge_function,
                                       template_name)
                 VALUES ('acme', 'no-table', 'email', 'crm', 'invoice', 'invoice_id',
                         'modified_at', 'crm', 'welcome_email', 'welcome')",
            )
            .await
    }

    pub async fn set_schedule_active(&self, name: &str, active: bool) -> anyhow::Result<()> {
        self.notify
            .execute(
                "UPDATE schedule SET active = $1 WHERE name = $2",
                &[active.into(), name.into()],
            )
            .await?;
        Ok(())
    }

    /// Queues `count` rendered emails of the first schedule, ready to send, to
    /// `to<n>@example.com` (PostgreSQL).
    pub async fn queue_ready_emails(&self, count: i64) -> anyhow::Result<()> {
        self.notify
            .execute(
                "INSERT INTO message (tenant, schedule_id, source_key, change_version, channel,
                                      account, status, recipient, subject, body_text)
                 SELECT 'acme', 1, n::text, '1', 'email', 'email', 'queued',
                        'to' || n || '@example.com', 'Hello', 'Hello there'
                   FROM generate_series(1, $1::bigint) AS n",
                &[count.into()],
            )
            .await?;
        Ok(())
    }

    /// Queues `count` rendered messages of `tenant` (schedule 1) on `channel`, through its
    /// default account, as a renderer would: to `<tenant>-<n>@example.com`, or `+1555000<n>`
    /// for SMS, the n-th due `n` ms after `due`.
    pub async fn queue_messages(
        &self,
        tenant: &str,
        channel: &str,
        count: i64,
        due: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        for n in 0..count {
            let recipient = if channel == "sms" {
                format!("+1555000{n:04}")
            } else {
                format!("{tenant}-{n}@example.com")
            };
            self.notify
                .execute(
                    "INSERT INTO message (tenant, schedule_id, source_key, change_version, channel,
                                          account, status, recipient, subject, body_text,
                                          next_attempt_at)
                     VALUES ($1, 1, $2, '1', $3, $3, 'queued', $4, 'Hello', 'Hello there', $5)",
                    &[
                        tenant.into(),
                        format!("{channel}-{n}").as_str().into(),
                        channel.into(),
                        recipient.as_str().into(),
                        Value::Time(due + chrono::Duration::milliseconds(n)),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// How many of `tenant`'s messages are `sent`.
    pub async fn sent_to_tenant(&self, tenant: &str) -> anyhow::Result<usize> {
        let sent = self
            .notify
            .count(
                "SELECT count(*) FROM message WHERE tenant = $1 AND status = 'sent'",
                &[tenant.into()],
            )
            .await?;
        Ok(usize::try_from(sent)?)
    }

    /// How many messages the queue holds with `status`.
    pub async fn messages_with_status(&self, status: &str) -> anyhow::Result<i64> {
        self.notify
            .count(
                "SELECT count(*) FROM message WHERE status = $1",
                &[status.into()],
            )
            .await
    }
}
