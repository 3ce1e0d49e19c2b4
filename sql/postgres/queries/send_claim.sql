-- Sender $1 takes up to $3 due queued messages on channels $4 and starts their provider
-- calls: each goes `sending` with its attempt row, under a lease of $2 seconds that covers
-- the call; one whose recipient is on the suppression list (the tenant's, or its schedule's)
-- goes `suppressed` instead. One statement, so no message is ever claimed but not begun.
-- Tenants are served in turn: each tenant with messages due on these channels gets an equal
-- share of the claim, its oldest first, and the claim takes their first messages, then their
-- second, and so on, so a tenant's backlog never holds up another's messages (a tenant with
-- fewer than its share leaves the rest to the next claim). Returns both, `sending` ones with their attempt
-- number, the attempts counted before it and whether their schedule offers one-click
-- unsubscribe.
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
), busy AS (
    -- those with a message due now on the channels asked for
    SELECT t.tenant
      FROM tenants t
     WHERE t.tenant IS NOT NULL
       AND EXISTS (SELECT 1
                     FROM message m
                    WHERE m.status = 'queued'
                      AND m.tenant = t.tenant
                      AND m.next_attempt_at <= now()
                      AND m.channel = ANY($4::text[])
                      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now()))
), share AS (
    SELECT ceil($3::bigint::float8 / greatest(count(*), 1))::bigint AS per_tenant FROM busy
), due AS (
    SELECT p.message_id,
           EXISTS (SELECT 1
                     FROM suppression s
                    WHERE s.tenant = t.tenant
                      AND s.channel = p.channel
                      AND lower(s.address) = lower(p.recipient)
                      AND (s.schedule_id IS NULL OR s.schedule_id = p.schedule_id))
               AS suppressed
      FROM busy t
     CROSS JOIN LATERAL (
           SELECT m.message_id, m.channel, m.recipient, m.schedule_id, m.next_attempt_at
             FROM message m
            WHERE m.status = 'queued'
              AND m.tenant = t.tenant
              AND m.next_attempt_at <= now()
              AND m.channel = ANY($4::text[])
              -- a claim made by a sender of an earlier version, not begun
              AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now())
            ORDER BY m.next_attempt_at
            LIMIT (SELECT per_tenant FROM share)
              FOR UPDATE SKIP LOCKED) p
     -- each tenant's first, then each tenant's second, …
     ORDER BY row_number() OVER (PARTITION BY t.tenant ORDER BY p.next_attempt_at),
              p.next_attempt_at
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
    RETURNING m.message_id, m.tenant, m.schedule_id, m.channel, m.recipient, m.recipient_name,
              m.subject, m.body_html, m.body_text, due.suppressed,
              m.send_attempts AS attempt,
              m.send_attempts - m.uncounted_attempts - 1 AS counted_attempts,
              EXISTS (SELECT 1 FROM schedule sc
                       WHERE sc.schedule_id = m.schedule_id AND sc.unsubscribe IS NOT NULL)
                  AS one_click
), attempts AS (
    INSERT INTO delivery_attempt (message_id, attempt, sender)
    SELECT message_id, attempt, $1 FROM claimed WHERE NOT suppressed
)
SELECT * FROM claimed
