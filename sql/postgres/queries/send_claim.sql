-- Sender $1 takes up to $3 due queued messages and starts their provider calls: each goes
-- `sending` with its attempt row, under a lease of $2 seconds that covers the call; one whose
-- recipient is on the suppression list (the tenant's, or its schedule's) goes `suppressed`
-- instead. One statement, so no message is ever claimed but not begun.
-- A message's provider account is its `account`, else its channel's default (`email`,
-- `sms`); messages of accounts $4 (paused) wait, and with $5 only that account's are taken.
-- Tenants are served in turn: each tenant with messages due gets an equal share of the claim,
-- its oldest first, and the claim takes their first messages, then their second, and so on,
-- so a tenant's backlog never holds up another's messages (a tenant with fewer than its share
-- leaves the rest to the next claim). Send limits (send_limit) cap what a tenant and what an
-- account get: their buckets are locked, so claims sharing one take turns, and the messages
-- going `sending` are taken out of them.
-- Returns both, `sending` ones with their attempt number, the attempts counted before it and
-- whether their schedule offers one-click unsubscribe.
WITH RECURSIVE tenants AS (
    -- each tenant with queued messages: one probe of message_send_due_by_tenant each
    (SELECT tenant FROM message WHERE status = 'queued' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT m.tenant
              FROM message m
             WHERE m.status = 'queued' AND m.tenant > t.tenant
             ORDER BY m.tenant
             LIMIT 1)
      FROM tenants t
     WHERE t.tenant IS NOT NULL
), bucket AS (
    -- the sends each limited tenant (with queued messages) and account may make now, locked
    -- in one order
    SELECT l.scope, l.name,
           CASE WHEN l.refilled_at IS NULL THEN l.burst
                ELSE least(l.burst, l.tokens + l.per_second
                                   * greatest(extract(epoch FROM now() - l.refilled_at), 0))
           END AS available
      FROM send_limit l
     WHERE l.scope = 'account'
        OR l.name IN (SELECT t.tenant FROM tenants t WHERE t.tenant IS NOT NULL)
     ORDER BY l.scope, l.name
       FOR UPDATE
), waiting AS (
    -- accounts paused, or whose bucket is empty
    SELECT unnest($4::text[]) AS account
    UNION ALL
    SELECT b.name FROM bucket b WHERE b.scope = 'account' AND b.available < 1
), busy AS (
    -- tenants with a message due now that may be sent, and how many their limit allows
    SELECT t.tenant, floor(b.available)::bigint AS allowed
      FROM tenants t
      LEFT JOIN bucket b ON b.scope = 'tenant' AND b.name = t.tenant
     WHERE t.tenant IS NOT NULL
       AND (b.available IS NULL OR b.available >= 1)
       AND EXISTS (SELECT 1
                     FROM message m
                    WHERE m.status = 'queued'
                      AND m.tenant = t.tenant
                      AND m.next_attempt_at <= now()
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now())
                      AND coalesce(m.account, m.channel) <> ALL (SELECT account FROM waiting)
                      AND ($5::text IS NULL OR coalesce(m.account, m.channel) = $5))
), share AS (
    SELECT ceil($3::bigint::float8 / greatest(count(*), 1))::bigint AS per_tenant FROM busy
), candidate AS (
    SELECT t.tenant, p.message_id, p.account, p.channel, p.recipient, p.schedule_id,
           row_number() OVER (PARTITION BY t.tenant ORDER BY p.next_attempt_at) AS turn,
           p.next_attempt_at
      FROM busy t
     CROSS JOIN LATERAL (
           SELECT m.message_id, coalesce(m.account, m.channel) AS account, m.channel,
                  m.recipient, m.schedule_id, m.next_attempt_at
             FROM message m
            WHERE m.status = 'queued'
              AND m.tenant = t.tenant
              AND m.next_attempt_at <= now()
              -- a claim made by a sender of an earlier version, not begun
              AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now())
              AND coalesce(m.account, m.channel) <> ALL (SELECT account FROM waiting)
              AND ($5::text IS NULL OR coalesce(m.account, m.channel) = $5)
            ORDER BY m.next_attempt_at
            LIMIT least((SELECT per_tenant FROM share), coalesce(t.allowed, $3::bigint))
              FOR UPDATE SKIP LOCKED) p
), due AS (
    SELECT c.message_id, c.tenant, c.account,
           EXISTS (SELECT 1
                     FROM suppression s
                    WHERE s.tenant = c.tenant
                      AND s.channel = c.channel
                      AND lower(s.address) = lower(c.recipient)
                      AND (s.schedule_id IS NULL OR s.schedule_id = c.schedule_id))
               AS suppressed
      FROM (SELECT c.*,
                   row_number() OVER (PARTITION BY c.account ORDER BY c.turn, c.next_attempt_at)
                       AS account_turn
              FROM candidate c) c
      LEFT JOIN bucket b ON b.scope = 'account' AND b.name = c.account
     WHERE b.available IS NULL OR c.account_turn <= floor(b.available)
     -- each tenant's first, then each tenant's second, …
     ORDER BY c.turn, c.next_attempt_at
     LIMIT $3::bigint
), claimed AS (
    UPDATE message m
       SET status = CASE WHEN due.suppressed THEN 'suppressed' ELSE 'sending' END,
           send_attempts = m.send_attempts + CASE WHEN due.suppressed THEN 0 ELSE 1 END,
           last_error = CASE WHEN due.suppressed
                             THEN 'the recipient is on the suppression list' END,
           lease_owner = CASE WHEN due.suppressed THEN NULL ELSE $1 END,
           lease_expires_at = CASE WHEN due.suppressed THEN NULL
                                   ELSE now() + make_interval(secs => $2::float8) END,
           updated_at = now()
      FROM due
     WHERE m.message_id = due.message_id
    RETURNING m.message_id, m.tenant, m.schedule_id, m.channel, m.account, m.recipient,
              m.recipient_name, m.subject, m.body_html, m.body_text, due.suppressed,
              due.account AS bucket_account,
              m.send_attempts AS attempt,
              m.send_attempts - m.uncounted_attempts - 1 AS counted_attempts,
              EXISTS (SELECT 1 FROM schedule sc
                       WHERE sc.schedule_id = m.schedule_id AND sc.unsubscribe IS NOT NULL)
                  AS one_click
), attempts AS (
    INSERT INTO delivery_attempt (message_id, attempt, sender)
    SELECT message_id, attempt, $1 FROM claimed WHERE NOT suppressed
), spent AS (
    -- the calls begun, taken out of their tenant's and their account's buckets
    UPDATE send_limit l
       SET tokens = b.available - u.calls, refilled_at = now()
      FROM (SELECT 'tenant' AS scope, tenant AS name, count(*) AS calls
              FROM claimed WHERE NOT suppressed GROUP BY tenant
            UNION ALL
            SELECT 'account', bucket_account, count(*)
              FROM claimed WHERE NOT suppressed GROUP BY bucket_account) u
      JOIN bucket b ON b.scope = u.scope AND b.name = u.name
     WHERE l.scope = u.scope AND l.name = u.name
)
SELECT * FROM claimed
