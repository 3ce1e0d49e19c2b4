-- Sender @P1 takes up to @P3 due queued messages on channels @P4 (a JSON array) and starts
-- their provider calls: each goes `sending` with its attempt row, under a lease of @P2
-- milliseconds that covers the call; one whose recipient is on the suppression list (the
-- tenant's, or its schedule's) goes `suppressed` instead. Tenants are served in turn: each
-- tenant with messages due on these channels gets an equal share of the claim, its oldest
-- first, and the claim takes their first messages, then their second, and so on, so a
-- tenant's backlog never holds up another's messages (a tenant with fewer than its share
-- leaves the rest to the next claim). One transaction, so no message is ever claimed but not begun; XACT_ABORT rolls it
-- back on any error, and a session that fails midway is closed by the engine. The chosen
-- rows are read with SQL Server's SKIP LOCKED (UPDLOCK, READPAST, ROWLOCK; READ COMMITTED or
-- REPEATABLE READ only, see render_claim_retries.sql) and stay locked until the commit.
-- Returns both, `sending` ones with their attempt number, the attempts counted before it and
-- whether their schedule offers one-click unsubscribe.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @tenants TABLE (tenant nvarchar(128) NOT NULL PRIMARY KEY);
DECLARE @chosen TABLE (message_id bigint NOT NULL PRIMARY KEY);
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

-- Each tenant with queued messages: one seek of message_send_due_by_tenant per tenant (the
-- ROW_NUMBER() = 1 of the recursive part is the next tenant; recursive parts take no TOP,
-- and a UNION's first part no ORDER BY). READPAST: rows other claims hold are theirs.
WITH tenants AS (
    SELECT MIN(m.tenant) AS tenant
      FROM dbo.message AS m WITH (READPAST)
     WHERE m.status = N'queued'
    UNION ALL
    SELECT r.tenant
      FROM (SELECT m.tenant, ROW_NUMBER() OVER (ORDER BY m.tenant) AS rn
              FROM dbo.message AS m WITH (READPAST)
              JOIN tenants AS t ON m.tenant > t.tenant
             WHERE m.status = N'queued') AS r
     WHERE r.rn = 1
)
INSERT INTO @tenants (tenant)
SELECT tenant FROM tenants WHERE tenant IS NOT NULL
OPTION (MAXRECURSION 0);

-- Only those with a message due now on the channels asked for.
DELETE t
  FROM @tenants AS t
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.message AS m WITH (READPAST)
                    WHERE m.status = N'queued'
                      AND m.tenant = t.tenant
                      AND m.next_attempt_at <= SYSUTCDATETIME()
                      AND m.channel IN (SELECT c.value FROM OPENJSON(@P4) AS c)
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < SYSUTCDATETIME()));

DECLARE @per_tenant int = CEILING(CAST(@P3 AS float)
                                  / (SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE COUNT(*) END
                                       FROM @tenants));

INSERT INTO @chosen (message_id)
SELECT TOP (@P3) p.message_id
  FROM @tenants AS t
 CROSS APPLY (SELECT TOP (@per_tenant) m.message_id, m.next_attempt_at
                FROM dbo.message AS m WITH (UPDLOCK, READPAST, ROWLOCK)
               WHERE m.status = N'queued'
                 AND m.tenant = t.tenant
                 AND m.next_attempt_at <= SYSUTCDATETIME()
                 AND m.channel IN (SELECT c.value FROM OPENJSON(@P4) AS c)
                 -- a claim made by a sender of an earlier version, not begun
                 AND (m.lease_expires_at IS NULL OR m.lease_expires_at < SYSUTCDATETIME())
               ORDER BY m.next_attempt_at) AS p
 -- each tenant's first, then each tenant's second, …
 ORDER BY ROW_NUMBER() OVER (PARTITION BY t.tenant ORDER BY p.next_attempt_at),
          p.next_attempt_at;

UPDATE m
   SET status = CASE WHEN s.suppressed = 1 THEN N'suppressed' ELSE N'sending' END,
       send_attempts = m.send_attempts + 1 - s.suppressed,
       last_error = CASE WHEN s.suppressed = 1
                         THEN N'the recipient is on the suppression list' END,
       lease_owner = CASE WHEN s.suppressed = 1 THEN NULL ELSE @P1 END,
       lease_expires_at = CASE WHEN s.suppressed = 1 THEN NULL
                               ELSE DATEADD(millisecond, @P2, SYSUTCDATETIME()) END,
       updated_at = SYSUTCDATETIME()
OUTPUT inserted.message_id, inserted.tenant, inserted.schedule_id, inserted.channel,
       inserted.recipient, inserted.recipient_name, inserted.subject, inserted.body_html,
       inserted.body_text,
       CASE WHEN inserted.status = N'suppressed' THEN 1 ELSE 0 END,
       inserted.send_attempts, inserted.send_attempts - inserted.uncounted_attempts - 1
  INTO @claimed (message_id, tenant, schedule_id, channel, recipient, recipient_name,
                 subject, body_html, body_text, suppressed, attempt, counted_attempts)
  FROM dbo.message AS m
  JOIN @chosen AS c ON c.message_id = m.message_id
 CROSS APPLY (SELECT CASE WHEN EXISTS (
                          SELECT 1
                            FROM dbo.suppression AS sp
                           WHERE sp.tenant = m.tenant
                             AND sp.channel = m.channel
                             AND sp.address_lower = LOWER(m.recipient)
                             AND (sp.schedule_id IS NULL OR sp.schedule_id = m.schedule_id))
                      THEN 1 ELSE 0 END AS suppressed) AS s;

INSERT INTO dbo.delivery_attempt (message_id, attempt, sender)
SELECT message_id, attempt, @P1 FROM @claimed WHERE suppressed = 0;

COMMIT TRANSACTION;

SELECT c.message_id, c.tenant, c.schedule_id, c.channel, c.recipient, c.recipient_name,
       c.subject, c.body_html, c.body_text, c.suppressed, c.attempt, c.counted_attempts,
       CAST(CASE WHEN sc.unsubscribe IS NOT NULL THEN 1 ELSE 0 END AS bit) AS one_click
  FROM @claimed AS c
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = c.schedule_id;
