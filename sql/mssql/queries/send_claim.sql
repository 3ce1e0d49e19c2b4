-- Lease (@P1 owner, @P2 milliseconds) up to @P3 due queued messages, none on channels @P4
-- (a JSON array: their provider is paused), with whether the recipient is suppressed. The ordered TOP is an updatable CTE with SQL Server's SKIP
-- LOCKED (UPDLOCK, READPAST, ROWLOCK; READ COMMITTED or REPEATABLE READ only, see
-- render_claim_retries.sql). OUTPUT cannot hold a subquery, so the claimed rows go through
-- a table variable; the claim itself is one statement.
DECLARE @claimed TABLE (
    message_id     bigint        NOT NULL PRIMARY KEY,
    tenant         nvarchar(128) NOT NULL,
    schedule_id    bigint        NOT NULL,
    channel        nvarchar(8)   NOT NULL,
    recipient      nvarchar(320) NULL,
    recipient_name nvarchar(max) NULL,
    subject        nvarchar(max) NULL,
    body_html      nvarchar(max) NULL,
    body_text      nvarchar(max) NULL,
    counted_attempts int         NOT NULL
);

WITH due AS (
    SELECT TOP (@P3) message_id, tenant, schedule_id, channel, recipient, recipient_name,
           subject, body_html, body_text, send_attempts, uncounted_attempts, lease_owner, lease_expires_at
      FROM dbo.message WITH (UPDLOCK, READPAST, ROWLOCK)
     WHERE status = N'queued'
       AND next_attempt_at <= SYSUTCDATETIME()
       AND channel NOT IN (SELECT p.value FROM OPENJSON(@P4) AS p)
       AND (lease_expires_at IS NULL OR lease_expires_at < SYSUTCDATETIME())
     ORDER BY next_attempt_at
)
UPDATE due
   SET lease_owner = @P1, lease_expires_at = DATEADD(millisecond, @P2, SYSUTCDATETIME())
OUTPUT inserted.message_id, inserted.tenant, inserted.schedule_id, inserted.channel,
       inserted.recipient, inserted.recipient_name, inserted.subject, inserted.body_html,
       inserted.body_text, inserted.send_attempts - inserted.uncounted_attempts
  INTO @claimed (message_id, tenant, schedule_id, channel, recipient, recipient_name,
                 subject, body_html, body_text, counted_attempts);

SELECT c.message_id, c.tenant, c.schedule_id, c.channel, c.recipient, c.recipient_name,
       c.subject, c.body_html, c.body_text, c.counted_attempts,
       CAST(CASE WHEN EXISTS (SELECT 1
                                FROM dbo.suppression AS s
                               WHERE s.tenant = c.tenant
                                 AND s.channel = c.channel
                                 AND s.address_lower = LOWER(c.recipient))
                 THEN 1 ELSE 0 END AS bit) AS suppressed
  FROM @claimed AS c;
