-- Sender @P1 takes up to @P3 due queued messages and starts their provider calls: each goes
-- `sending` with its attempt row, under a lease of @P2 milliseconds that covers the call;
-- one whose recipient is on the suppression list (the tenant's, or its schedule's) goes
-- `suppressed` instead. A message's provider account is its `account`, else its channel's
-- default (`email`, `sms`); messages of accounts @P4 (paused; a JSON array) wait, and with
-- @P5 only that account's are taken. Tenants are served in turn: each tenant with messages
-- due gets an equal share of the claim, its oldest first, and the claim takes their first
-- messages, then their second, and so on, so a tenant's backlog never holds up another's
-- messages (a tenant with fewer than its share leaves the rest to the next claim). Send
-- limits (send_limit) cap what a tenant and what an account get: their buckets are locked
-- (UPDLOCK, HOLDLOCK, in key order), so claims sharing one take turns, and the messages going
-- `sending` are taken out of them. One transaction, so no message is ever claimed but not
-- begun; XACT_ABORT rolls it back on any error, and a session that fails midway is closed by
-- the engine. The chosen rows are read with SQL Server's SKIP LOCKED (UPDLOCK, READPAST,
-- ROWLOCK; READ COMMITTED or REPEATABLE READ only, see render_claim_retries.sql) and stay
-- locked until the commit. Returns both, `sending` ones with their attempt number, the
-- attempts counted before it and whether their schedule offers one-click unsubscribe.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @tenants TABLE (tenant nvarchar(128) NOT NULL PRIMARY KEY, allowed bigint NULL);
DECLARE @buckets TABLE (
    scope     nvarchar(8)   NOT NULL,
    name      nvarchar(128) NOT NULL,
    available float         NOT NULL,
    PRIMARY KEY (scope, name)
);
DECLARE @waiting TABLE (account nvarchar(128) NOT NULL PRIMARY KEY);
DECLARE @chosen TABLE (message_id bigint NOT NULL PRIMARY KEY, account nvarchar(128) NOT NULL);
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
    account          nvarchar(128) NULL,
    bucket_account   nvarchar(128) NOT NULL,
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

-- The sends each limited tenant (with queued messages) and account may make now.
INSERT INTO @buckets (scope, name, available)
SELECT l.scope, l.name,
       CASE WHEN l.refilled_at IS NULL THEN l.burst
            ELSE (SELECT MIN(v)
                    FROM (VALUES (l.burst),
                                 (l.tokens + l.per_second
                                  * IIF(l.refilled_at < SYSUTCDATETIME(),
                                        DATEDIFF_BIG(microsecond, l.refilled_at, SYSUTCDATETIME()),
                                        0) / 1e6)) AS x (v))
       END
  FROM dbo.send_limit AS l WITH (UPDLOCK, HOLDLOCK, ROWLOCK)
 WHERE l.scope = N'account'
    OR l.name IN (SELECT t.tenant FROM @tenants AS t);

-- Accounts paused, or whose bucket is empty.
INSERT INTO @waiting (account)
SELECT a.value FROM OPENJSON(@P4) AS a
UNION
SELECT b.name FROM @buckets AS b WHERE b.scope = N'account' AND b.available < 1;

UPDATE t
   SET allowed = FLOOR(b.available)
  FROM @tenants AS t
  JOIN @buckets AS b ON b.scope = N'tenant' AND b.name = t.tenant;

-- Only those with a message due now that may be sent.
DELETE t
  FROM @tenants AS t
 WHERE t.allowed < 1
    OR NOT EXISTS (SELECT 1
                     FROM dbo.message AS m WITH (READPAST)
                    WHERE m.status = N'queued'
                      AND m.tenant = t.tenant
                      AND m.next_attempt_at <= SYSUTCDATETIME()
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < SYSUTCDATETIME())
                      AND COALESCE(m.account, m.channel) NOT IN (SELECT w.account FROM @waiting AS w)
                      AND (@P5 IS NULL OR COALESCE(m.account, m.channel) = @P5));

DECLARE @per_tenant int = CEILING(CAST(@P3 AS float)
                                  / (SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE COUNT(*) END
                                       FROM @tenants));

INSERT INTO @chosen (message_id, account)
SELECT TOP (@P3) c.message_id, c.account
  FROM (SELECT r.message_id, r.account, r.next_attempt_at, r.turn,
               ROW_NUMBER() OVER (PARTITION BY r.account ORDER BY r.turn, r.next_attempt_at)
                   AS account_turn
          FROM (SELECT p.message_id, p.account, p.next_attempt_at,
                       ROW_NUMBER() OVER (PARTITION BY t.tenant ORDER BY p.next_attempt_at) AS turn
                  FROM @tenants AS t
                 CROSS APPLY (SELECT TOP (IIF(t.allowed < @per_tenant, t.allowed, @per_tenant))
                                     m.message_id, COALESCE(m.account, m.channel) AS account,
                                     m.next_attempt_at
                                FROM dbo.message AS m WITH (UPDLOCK, READPAST, ROWLOCK)
                               WHERE m.status = N'queued'
                                 AND m.tenant = t.tenant
                                 AND m.next_attempt_at <= SYSUTCDATETIME()
                                 -- a claim made by a sender of an earlier version, not begun
                                 AND (m.lease_expires_at IS NULL
                                      OR m.lease_expires_at < SYSUTCDATETIME())
                                 AND COALESCE(m.account, m.channel)
                                     NOT IN (SELECT w.account FROM @waiting AS w)
                                 AND (@P5 IS NULL OR COALESCE(m.account, m.channel) = @P5)
                               ORDER BY m.next_attempt_at) AS p) AS r) AS c
  LEFT JOIN @buckets AS b ON b.scope = N'account' AND b.name = c.account
 WHERE b.available IS NULL OR c.account_turn <= FLOOR(b.available)
 -- each tenant's first, then each tenant's second, …
 ORDER BY c.turn, c.next_attempt_at;

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
       inserted.body_text, inserted.account, c.account,
       CASE WHEN inserted.status = N'suppressed' THEN 1 ELSE 0 END,
       inserted.send_attempts, inserted.send_attempts - inserted.uncounted_attempts - 1
  INTO @claimed (message_id, tenant, schedule_id, channel, recipient, recipient_name,
                 subject, body_html, body_text, account, bucket_account, suppressed, attempt,
                 counted_attempts)
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

-- The calls begun, taken out of their tenant's and their account's buckets.
UPDATE l
   SET tokens = b.available - u.calls, refilled_at = SYSUTCDATETIME()
  FROM dbo.send_limit AS l
  JOIN (SELECT N'tenant' AS scope, tenant AS name, COUNT(*) AS calls
          FROM @claimed WHERE suppressed = 0 GROUP BY tenant
        UNION ALL
        SELECT N'account', bucket_account, COUNT(*)
          FROM @claimed WHERE suppressed = 0 GROUP BY bucket_account) AS u
    ON l.scope = u.scope AND l.name = u.name
  JOIN @buckets AS b ON b.scope = u.scope AND b.name = u.name;

COMMIT TRANSACTION;

SELECT c.message_id, c.tenant, c.schedule_id, c.channel, c.account, c.recipient, c.recipient_name,
       c.subject, c.body_html, c.body_text, c.suppressed, c.attempt, c.counted_attempts,
       CAST(CASE WHEN sc.unsubscribe IS NOT NULL THEN 1 ELSE 0 END AS bit) AS one_click
  FROM @claimed AS c
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = c.schedule_id;
