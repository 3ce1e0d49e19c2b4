-- Sender @P1 takes up to @P3 due queued messages on channels @P4 (a JSON array) and starts
-- their provider calls: each goes `sending` with its attempt row, under a lease of @P2
-- milliseconds that covers the call; one whose recipient is on the suppression list (the
-- tenant's, or its schedule's) goes `suppressed` instead. One transaction, so no message is ever claimed but not begun;
-- XACT_ABORT rolls it back on any error, and a session that fails midway is closed by the
-- engine. The ordered TOP is an updatable CTE with SQL Server's SKIP LOCKED (UPDLOCK,
-- READPAST, ROWLOCK; READ COMMITTED or REPEATABLE READ only, see render_claim_retries.sql).
-- Returns both, `sending` ones with their attempt number, the attempts counted before it and
-- whether their schedule offers one-click unsubscribe.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @claimed TABLE (
    message_id       bigint        NOT NULL PRIMARY KEY,
    tenant           nvarchar(128) NOT NULL,
    schedule_id      bigint        NOT NULL,
    channel          nvarchar(8)   NOT NULL,
    recipient        nvarchar(320) NULL,
    recipient_name   nvarchar(max) NULL,
    subject          nvarchar(max) NULL,
    body_html        nvarchar(max) NULL,
    body_text        nvarchar(max) NULL,
    suppressed       bit           NOT NULL,
    attempt          int           NOT NULL,
    counted_attempts int           NOT NULL
);

WITH due AS (
    SELECT TOP (@P3) m.message_id, m.tenant, m.schedule_id, m.channel, m.recipient,
           m.recipient_name, m.subject, m.body_html, m.body_text, m.status, m.send_attempts,
           m.uncounted_attempts, m.last_error, m.lease_owner, m.lease_expires_at, m.updated_at,
           CASE WHEN EXISTS (SELECT 1
                               FROM dbo.suppression AS s
                              WHERE s.tenant = m.tenant
                                AND s.channel = m.channel
                                AND s.address_lower = LOWER(m.recipient)
                                AND (s.schedule_id IS NULL OR s.schedule_id = m.schedule_id))
                THEN 1 ELSE 0 END AS suppressed
      FROM dbo.message AS m WITH (UPDLOCK, READPAST, ROWLOCK)
     WHERE m.status = N'queued'
       AND m.next_attempt_at <= SYSUTCDATETIME()
       AND m.channel IN (SELECT c.value FROM OPENJSON(@P4) AS c)
       -- a claim made by a sender of an earlier version, not begun
       AND (m.lease_expires_at IS NULL OR m.lease_expires_at < SYSUTCDATETIME())
     ORDER BY m.next_attempt_at
)
UPDATE due
   SET status = CASE WHEN suppressed = 1 THEN N'suppressed' ELSE N'sending' END,
       send_attempts = send_attempts + 1 - suppressed,
       last_error = CASE WHEN suppressed = 1
                         THEN N'the recipient is on the suppression list' END,
       lease_owner = CASE WHEN suppressed = 1 THEN NULL ELSE @P1 END,
       lease_expires_at = CASE WHEN suppressed = 1 THEN NULL
                               ELSE DATEADD(millisecond, @P2, SYSUTCDATETIME()) END,
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.tenant, inserted.schedule_id, inserted.channel,
       inserted.recipient, inserted.recipient_name, inserted.subject, inserted.body_html,
       inserted.body_text,
       CASE WHEN inserted.status = N'suppressed' THEN 1 ELSE 0 END,
       inserted.send_attempts, inserted.send_attempts - inserted.uncounted_attempts - 1
  INTO @claimed (message_id, tenant, schedule_id, channel, recipient, recipient_name,
                 subject, body_html, body_text, suppressed, attempt, counted_attempts);

INSERT INTO dbo.delivery_attempt (message_id, attempt, sender)
SELECT message_id, attempt, @P1 FROM @claimed WHERE suppressed = 0;

COMMIT TRANSACTION;

SELECT c.message_id, c.tenant, c.schedule_id, c.channel, c.recipient, c.recipient_name,
       c.subject, c.body_html, c.body_text, c.suppressed, c.attempt, c.counted_attempts,
       CAST(CASE WHEN sc.unsubscribe IS NOT NULL THEN 1 ELSE 0 END AS bit) AS one_click
  FROM @claimed AS c
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = c.schedule_id;
