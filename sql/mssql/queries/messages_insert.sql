-- Insert rendered messages (@P1: a JSON array of NewMessage); an identity already present
-- (a replayed event, a rescan), or repeated within the batch, inserts nothing. Why NOT
-- EXISTS without range locks, and not IGNORE_DUP_KEY: see ../notify/030-messages.sql (a
-- renderer inserting the same identity at the same moment makes this fail with 2627, and the
-- store repeats it).
-- The WITH clause declares the bounded columns in the table's own types, so the NOT EXISTS
-- probe is an index seek on message_identity; the engine checks lengths before sending,
-- so no value is ever cut to fit by OPENJSON's conversion. DATEADD takes an int: retry
-- delays are capped at 2,000,000 seconds. detected_at arrives as ISO 8601 in UTC (`Z`, at
-- most 6 fractional digits) and is stored as UTC. Waiting (for a replica behind the change,
-- or for the retry loop to call a slow merge function) is not a render attempt. A message
-- goes through the provider account its tenant names for its schedule, else for its other
-- schedules, else the channel's default (named as the channel). Returns how many were new (a row, not a row
-- count: counts depend on NOCOUNT).
WITH batch AS (
    -- keys and versions compare exactly (the identity's collation)
    SELECT m.*,
           ROW_NUMBER() OVER (PARTITION BY m.tenant, m.schedule_id,
                                           m.source_key COLLATE Latin1_General_100_BIN2,
                                           m.change_version COLLATE Latin1_General_100_BIN2
                              ORDER BY CAST(j.[key] AS int)) AS occurrence
      FROM OPENJSON(@P1) AS j
     CROSS APPLY OPENJSON(j.value) WITH (
               tenant nvarchar(128), schedule_id bigint, source_key nvarchar(400),
               change_version nvarchar(64), channel nvarchar(8), status nvarchar(16),
               recipient nvarchar(320), recipient_name nvarchar(max), locale nvarchar(35),
               subject nvarchar(max), body_html nvarchar(max), body_text nvarchar(max),
               error nvarchar(max), retry_in_secs float, event_partition int,
               event_offset bigint, detected_at datetimeoffset(7),
               waiting bit) AS m
)
INSERT INTO dbo.message (tenant, schedule_id, source_key, change_version, channel, status,
                         recipient, recipient_name, locale, subject, body_html, body_text,
                         last_error, render_attempts, next_attempt_at, event_partition,
                         event_offset, detected_at, account)
SELECT b.tenant, b.schedule_id, b.source_key, b.change_version, b.channel, b.status,
       b.recipient, b.recipient_name, b.locale, b.subject, b.body_html, b.body_text,
       b.error, IIF(b.waiting = 1, 0, 1),
       DATEADD(millisecond,
               CAST(IIF(b.retry_in_secs < 2000000, b.retry_in_secs * 1000, 2000000000) AS int),
               SYSUTCDATETIME()),
       b.event_partition, b.event_offset,
       CAST(SWITCHOFFSET(b.detected_at, '+00:00') AS datetime2(7)),
       ISNULL((SELECT TOP (1) a.account
                   FROM dbo.tenant_account AS a
                  WHERE a.tenant = b.tenant
                    AND a.channel = b.channel
                    AND COALESCE(a.schedule_id, b.schedule_id) = b.schedule_id
                ORDER BY IIF(a.schedule_id IS NULL, 1, 0)),
              b.channel)
  FROM batch AS b
 WHERE b.occurrence = 1
   AND NOT EXISTS (SELECT 1
                     FROM dbo.message AS q
                    WHERE q.tenant = b.tenant
                      AND q.schedule_id = b.schedule_id
                      AND q.source_key = b.source_key COLLATE Latin1_General_100_BIN2
                      AND q.change_version = b.change_version COLLATE Latin1_General_100_BIN2);

SELECT CAST(@@ROWCOUNT AS bigint) AS inserted;
