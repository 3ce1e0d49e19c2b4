-- Sender $1 takes up to $3 due queued messages and starts their provider calls: each goes
-- `sending` with its attempt row, under a lease of $2 seconds that covers the call; one whose
-- recipient is on the suppression list (the tenant's, or its schedule's) goes `suppressed`
-- instead. One statement, so no message is ever claimed but not begun.
-- Messages of the provider accounts $4 (paused) wait; with $5, only that account's are taken.
-- Tenants are served in turn: each tenant with messages due gets an equal share of the claim,
-- its oldest first, and the claim takes their first messages, then their second, and so on,
-- so a tenant's backlog never holds up another's messages (a tenant with fewer than its share
-- leaves the rest to the next claim). Send limits (send_limit) cap what a tenant and what an
-- account get: their buckets are locked, in one order, so claims sharing one take turns, and
-- the messages going `sending` are taken out of them. A tenant's messages are read per
-- account, so one account's limit or pause never holds up its messages on another.
-- Returns both, `sending` ones with their attempt number, the attempts counted before it and
-- whether their schedule offers one-click unsubscribe.
WITH RECURSIVE queues AS (
    -- each tenant's account with queued messages: one probe of message_send_due_by_account
    -- each
    (SELECT tenant, account
       FROM message
      WHERE status = 'queued'
      ORDER BY tenant, account
      LIMIT 1)
    UNION ALL
    SELECT n.tenant, n.account
      FROM queues q
     CROSS JOIN LATERAL (
           SELECT m.tenant, m.account
             FROM message m
            WHERE m.status = 'queued' AND (m.tenant, m.account) > (q.tenant, q.account)
            ORDER BY m.tenant, m.account
            LIMIT 1) n
), wanted AS (
    -- those of accounts not paused (with $5: of that account)
    SELECT tenant, account
      FROM queues
     WHERE account <> ALL ($4::text[])
       AND ($5::text IS NULL OR account = $5)
), bucket AS (
    -- what the limits of these tenants and accounts allow now
    SELECT l.scope, l.name,
           CASE WHEN l.refilled_at IS NULL THEN l.burst
                ELSE least(l.burst, l.tokens + l.per_second
                                   * greatest(extract(epoch FROM now() - l.refilled_at), 0))
           END AS available
      FROM send_limit l
     WHERE (l.scope = 'tenant' AND l.name IN (SELECT tenant FROM wanted))
        OR (l.scope = 'account' AND l.name IN (SELECT account FROM wanted))
     ORDER BY l.scope, l.name
       FOR UPDATE
), busy AS (
    -- those with a message due now that may be sent, and how many their limits allow
    SELECT q.tenant, q.account,
           coalesce(floor(t.available)::bigint, $3::bigint) AS tenant_allows,
           coalesce(floor(a.available)::bigint, $3::bigint) AS account_allows
      FROM wanted q
      LEFT JOIN bucket t ON t.scope = 'tenant' AND t.name = q.tenant
      LEFT JOIN bucket a ON a.scope = 'account' AND a.name = q.account
     WHERE coalesce(t.available, 1) >= 1
       AND coalesce(a.available, 1) >= 1
       AND EXISTS (SELECT 1
                     FROM message m
                    WHERE m.status = 'queued'
                      AND m.tenant = q.tenant
                      AND m.account = q.account
                      AND m.next_attempt_at <= now()
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now()))
), share AS (
    SELECT ceil($3::bigint::float8 / greatest(count(DISTINCT tenant), 1))::bigint AS per_tenant
      FROM busy
), candidate AS (
    -- each tenant's oldest on each account, in their places
    SELECT b.tenant, b.account, b.tenant_allows, p.message_id, p.channel, p.recipient,
           p.schedule_id, p.next_attempt_at,
           row_number() OVER (PARTITION BY b.tenant, b.account ORDER BY p.next_attempt_at)
               AS place
      FROM busy b
     CROSS JOIN LATERAL (
           SELECT m.message_id, m.channel, m.recipient, m.schedule_id, m.next_attempt_at
             FROM message m
            WHERE m.status = 'queued'
              AND m.tenant = b.tenant
              AND m.account = b.account
              AND m.next_attempt_at <= now()
              -- a claim made by a sender of an earlier version, not begun
              AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now())
            ORDER BY m.next_attempt_at
            LIMIT least((SELECT per_tenant FROM share), b.tenant_allows, b.account_allows)
              FOR UPDATE SKIP LOCKED) p
), within_accounts AS (
    -- what each account's limit allows, its tenants taking turns
    SELECT c.*
      FROM (SELECT c.*,
                   row_number() OVER (PARTITION BY c.account ORDER BY c.place, c.next_attempt_at)
                       AS account_turn
              FROM candidate c) c
      LEFT JOIN bucket a ON a.scope = 'account' AND a.name = c.account
     WHERE a.available IS NULL OR c.account_turn <= floor(a.available)
), due AS (
    -- then each tenant's share and limit, oldest first
    SELECT c.message_id, c.tenant, c.account,
           EXISTS (SELECT 1
                     FROM suppression s
                    WHERE s.tenant = c.tenant
                      AND s.channel = c.channel
                      AND lower(s.address) = lower(c.recipient)
                      AND (s.schedule_id IS NULL OR s.schedule_id = c.schedule_id))
               AS suppressed
      FROM (SELECT c.*,
                   row_number() OVER (PARTITION BY c.tenant ORDER BY c.next_attempt_at) AS turn
              FROM within_accounts c) c
     WHERE c.turn <= least((SELECT per_tenant FROM share), c.tenant_allows)
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
              m.send_attempts AS attempt,
              m.send_attempts - m.uncounted_attempts - 1 AS counted_attempts,
              EXISTS (SELECT 1 FROM schedule sc
                       WHERE sc.schedule_id = m.schedule_id AND sc.unsubscribe IS NOT NULL)
                  AS one_click
), attempts AS (
    INSERT INTO delivery_attempt (message_id, attempt, sender)
    SELECT message_id, attempt, $1 FROM claimed WHERE NOT suppressed
), spent AS (
    -- the calls begun, taken out of their tenant's and their account's buckets (a claim that
    -- waited for the lock may have begun before the one it waited for)
    UPDATE send_limit l
       SET tokens = b.available - u.calls, refilled_at = greatest(l.refilled_at, now())
      FROM (SELECT 'tenant' AS scope, tenant AS name, count(*) AS calls
              FROM claimed WHERE NOT suppressed GROUP BY tenant
            UNION ALL
            SELECT 'account', account, count(*)
              FROM claimed WHERE NOT suppressed GROUP BY account) u
      JOIN bucket b ON b.scope = u.scope AND b.name = u.name
     WHERE l.scope = u.scope AND l.name = u.name
)
SELECT * FROM claimed
