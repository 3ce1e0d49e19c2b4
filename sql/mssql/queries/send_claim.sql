-- Sender @P1 takes up to @P3 due queued messages and starts their provider calls: each goes
-- `sending` with its attempt row, under a lease of @P2 milliseconds that covers the call;
-- one whose recipient is on the suppression list (the tenant's, or its schedule's) goes
-- `suppressed` instead. Messages of the provider accounts @P4 (paused; a JSON array) wait;
-- with @P5, only that account's are taken. Tenants are served in turn: each tenant with
-- messages due gets an equal share of the claim, its oldest first, and the claim takes their
-- first messages, then their second, and so on, so a tenant's backlog never holds up
-- another's messages (a tenant with fewer than its share leaves the rest to the next claim).
-- Send limits (send_limit) cap what a tenant and what an account get: their buckets are
-- locked (UPDLOCK, HOLDLOCK, in key order), so claims sharing one take turns, and the
-- messages going `sending` are taken out of them. A tenant's messages are read per account,
-- so one account's limit or pause never holds up its messages on another. One transaction,
-- so no message is ever claimed but not begun; XACT_ABORT rolls it back on any error, and a
-- session that fails midway is closed by the engine. The chosen rows are read with SQL
-- Server's SKIP LOCKED (UPDLOCK, READPAST, ROWLOCK; a locking read, READCOMMITTEDLOCK also
-- under READ_COMMITTED_SNAPSHOT: see render_claim_retries.sql) and stay locked until the
-- commit. Returns both, `sending`
-- ones with their attempt number, the attempts counted before it and whether their schedule
-- offers one-click unsubscribe.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @queues TABLE (
    tenant         nvarchar(128) NOT NULL,
    account        nvarchar(128) NOT NULL,
    tenant_allows  bigint        NULL,
    account_allows bigint        NULL,
    -- what the claim reads of this queue: the tenant's share, within both limits
    take           bigint        NULL,
    PRIMARY KEY (tenant, account)
);
DECLARE @buckets TABLE (
    scope     nvarchar(8)   NOT NULL,
    name      nvarchar(128) NOT NULL,
    available float         NOT NULL,
    PRIMARY KEY (scope, name)
);
DECLARE @chosen TABLE (message_id bigint NOT NULL PRIMARY KEY);
DECLARE @claimed TABLE (
    message_id       bigint        NOT NULL PRIMARY KEY,
    tenant           nvarchar(128) NOT NULL,
    schedule_id      bigint        NOT NULL,
    channel          nvarchar(8)   NOT NULL,
    account          nvarchar(128) NOT NULL,
    recipient        nvarchar(320) NULL,
    recipient_name   nvarchar(max) NULL,
    subject          nvarchar(max) NULL,
    body_html        nvarchar(max) NULL,
    body_text        nvarchar(max) NULL,
    suppressed       bit           NOT NULL,
    attempt          int           NOT NULL,
    counted_attempts int           NOT NULL
);

-- Each tenant's account with queued messages: one seek of message_send_due_by_account each,
-- the next account of the tenant, else the next tenant's first. READPAST: rows other claims
-- hold are theirs.
DECLARE @tenant nvarchar(128), @account nvarchar(128), @more int;
SELECT TOP (1) @tenant = tenant, @account = account
  FROM dbo.message WITH (READPAST, READCOMMITTEDLOCK)
 WHERE status = N'queued' AND account IS NOT NULL
 ORDER BY tenant, account;
SET @more = @@ROWCOUNT;
WHILE @more = 1
BEGIN
    INSERT INTO @queues (tenant, account) VALUES (@tenant, @account);
    SELECT TOP (1) @account = account
      FROM dbo.message WITH (READPAST, READCOMMITTEDLOCK)
     WHERE status = N'queued' AND tenant = @tenant AND account > @account
     ORDER BY account;
    IF @@ROWCOUNT = 0
    BEGIN
        SELECT TOP (1) @tenant = tenant, @account = account
          FROM dbo.message WITH (READPAST, READCOMMITTEDLOCK)
         WHERE status = N'queued' AND account IS NOT NULL AND tenant > @tenant
         ORDER BY tenant, account;
        SET @more = @@ROWCOUNT;
    END;
END;

-- Only those of accounts not paused (with @P5: of that account).
DELETE FROM @queues
 WHERE account IN (SELECT p.value FROM OPENJSON(@P4) AS p)
    OR (@P5 IS NOT NULL AND account <> @P5);

-- What the limits of these tenants and accounts allow now (@now: a claim that waited for the
-- locks may have begun before the one it waited for).
DECLARE @now datetime2(7) = SYSUTCDATETIME();
INSERT INTO @buckets (scope, name, available)
SELECT l.scope, l.name,
       CASE WHEN l.refilled_at IS NULL THEN l.burst
            ELSE (SELECT MIN(v)
                    FROM (VALUES (l.burst),
                                 (l.tokens + l.per_second
                                  * IIF(l.refilled_at < @now,
                                        DATEDIFF_BIG(microsecond, l.refilled_at, @now),
                                        0) / 1e6)) AS x (v))
       END
  FROM (SELECT N'tenant', tenant FROM @queues
        UNION
        SELECT N'account', account FROM @queues) AS k (scope, name)
  JOIN dbo.send_limit AS l WITH (UPDLOCK, HOLDLOCK, ROWLOCK, FORCESEEK)
    ON l.scope = k.scope AND l.name = k.name;

UPDATE q
   SET tenant_allows = FLOOR(t.available), account_allows = FLOOR(a.available)
  FROM @queues AS q
  LEFT JOIN @buckets AS t ON t.scope = N'tenant' AND t.name = q.tenant
  LEFT JOIN @buckets AS a ON a.scope = N'account' AND a.name = q.account;

-- Only those with a message due now that may be sent.
DELETE q
  FROM @queues AS q
 WHERE q.tenant_allows < 1
    OR q.account_allows < 1
    OR NOT EXISTS (SELECT 1
                     FROM dbo.message AS m WITH (READPAST, READCOMMITTEDLOCK)
                    WHERE m.status = N'queued'
                      AND m.tenant = q.tenant
                      AND m.account = q.account
                      AND m.next_attempt_at <= SYSUTCDATETIME()
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < SYSUTCDATETIME()));

DECLARE @per_tenant bigint = CEILING(CAST(@P3 AS float)
                                     / (SELECT CASE WHEN COUNT(DISTINCT tenant) = 0 THEN 1
                                                    ELSE COUNT(DISTINCT tenant) END
                                          FROM @queues));

UPDATE @queues
   SET take = (SELECT MIN(n)
                 FROM (VALUES (@per_tenant), (tenant_allows), (account_allows)) AS x (n));

-- Each tenant's oldest on each account; what each account's limit allows, its tenants taking
-- turns; then each tenant's share and limit, oldest first: each tenant's first, then each
-- tenant's second, …
INSERT INTO @chosen (message_id)
SELECT TOP (@P3) d.message_id
  FROM (SELECT w.message_id, w.next_attempt_at, w.tenant_allows,
               ROW_NUMBER() OVER (PARTITION BY w.tenant ORDER BY w.next_attempt_at) AS turn
          FROM (SELECT c.message_id, c.tenant, c.tenant_allows, c.next_attempt_at,
                       c.account_allows,
                       ROW_NUMBER() OVER (PARTITION BY c.account
                                          ORDER BY c.place, c.next_attempt_at) AS account_turn
                  FROM (SELECT p.message_id, q.tenant, q.account, q.tenant_allows,
                               q.account_allows, p.next_attempt_at,
                               ROW_NUMBER() OVER (PARTITION BY q.tenant, q.account
                                                  ORDER BY p.next_attempt_at) AS place
                          FROM @queues AS q
                         CROSS APPLY (SELECT TOP (q.take) m.message_id, m.next_attempt_at
                                        FROM dbo.message AS m WITH (UPDLOCK, READPAST, ROWLOCK, READCOMMITTEDLOCK)
                                       WHERE m.status = N'queued'
                                         AND m.tenant = q.tenant
                                         AND m.account = q.account
                                         AND m.next_attempt_at <= SYSUTCDATETIME()
                                         -- a claim made by a sender of an earlier version,
                                         -- not begun
                                         AND (m.lease_expires_at IS NULL
                                              OR m.lease_expires_at < SYSUTCDATETIME())
                                       ORDER BY m.next_attempt_at) AS p) AS c) AS w
         WHERE w.account_allows IS NULL OR w.account_turn <= w.account_allows) AS d
 WHERE d.turn <= @per_tenant
   AND (d.tenant_allows IS NULL OR d.turn <= d.tenant_allows)
 ORDER BY d.turn, d.next_attempt_at;

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
       inserted.account, inserted.recipient, inserted.recipient_name, inserted.subject,
       inserted.body_html, inserted.body_text,
       CASE WHEN inserted.status = N'suppressed' THEN 1 ELSE 0 END,
       inserted.send_attempts, inserted.send_attempts - inserted.uncounted_attempts - 1
  INTO @claimed (message_id, tenant, schedule_id, channel, account, recipient, recipient_name,
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

-- The calls begun, taken out of their tenant's and their account's buckets (a claim that
-- waited for the locks may have begun before the one it waited for).
UPDATE l
   SET tokens = b.available - u.calls, refilled_at = IIF(l.refilled_at > @now, l.refilled_at, @now)
  FROM dbo.send_limit AS l
  JOIN (SELECT N'tenant' AS scope, tenant AS name, COUNT(*) AS calls
          FROM @claimed WHERE suppressed = 0 GROUP BY tenant
        UNION ALL
        SELECT N'account', account, COUNT(*)
          FROM @claimed WHERE suppressed = 0 GROUP BY account) AS u
    ON l.scope = u.scope AND l.name = u.name
  JOIN @buckets AS b ON b.scope = u.scope AND b.name = u.name;

COMMIT TRANSACTION;

SELECT c.message_id, c.tenant, c.schedule_id, c.channel, c.account, c.recipient,
       c.recipient_name, c.subject, c.body_html, c.body_text, c.suppressed, c.attempt,
       c.counted_attempts,
       CAST(CASE WHEN sc.unsubscribe IS NOT NULL THEN 1 ELSE 0 END AS bit) AS one_click
  FROM @claimed AS c
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = c.schedule_id;
