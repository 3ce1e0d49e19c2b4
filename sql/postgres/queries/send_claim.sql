-- Lease ($1 owner, $2 seconds) up to $3 due queued messages, none on channels $4 (their
-- provider is paused), with whether the recipient is suppressed.
UPDATE message m
   SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2::float8)
 WHERE m.message_id IN (
           SELECT message_id
             FROM message
            WHERE status = 'queued'
              AND next_attempt_at <= now()
              AND channel <> ALL($4::text[])
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
            ORDER BY next_attempt_at
            LIMIT $3
              FOR UPDATE SKIP LOCKED)
RETURNING m.message_id, m.tenant, m.schedule_id, m.channel, m.recipient, m.recipient_name,
          m.subject, m.body_html, m.body_text,
          m.send_attempts - m.uncounted_attempts AS counted_attempts,
          EXISTS (SELECT 1
                    FROM suppression s
                   WHERE s.tenant = m.tenant
                     AND s.channel = m.channel
                     AND lower(s.address) = lower(m.recipient)) AS suppressed
