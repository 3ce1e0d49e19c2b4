-- Lease ($1 owner, $2 seconds) up to $3 due render retries.
UPDATE message m
   SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2::float8)
 WHERE m.message_id IN (
           SELECT message_id
             FROM message
            WHERE status = 'render_retry'
              AND next_attempt_at <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
            ORDER BY next_attempt_at
            LIMIT $3
              FOR UPDATE SKIP LOCKED)
RETURNING m.message_id, m.tenant, m.schedule_id, m.source_key, m.change_version, m.channel,
          m.render_attempts, coalesce(m.detected_at, m.created_at) AS detected_at
