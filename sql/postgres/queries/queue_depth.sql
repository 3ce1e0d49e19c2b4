-- The open part of the queue, per tenant, schedule and status: messages waiting to be
-- rendered again, to be sent, inside a provider call, or in doubt (waiting for an
-- operator), with the age in seconds of the oldest. Each status is read through its own
-- partial index, so the cost follows the open messages, not the table.
SELECT m.tenant, coalesce(s.name, m.schedule_id::text) AS schedule, m.status,
       count(*) AS messages,
       extract(epoch FROM now() - min(m.created_at))::float8 AS oldest_seconds
  FROM (SELECT tenant, schedule_id, status, created_at FROM message WHERE status = 'render_retry'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM message WHERE status = 'queued'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM message WHERE status = 'sending'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM message WHERE status = 'in_doubt') m
  LEFT JOIN schedule s ON s.schedule_id = m.schedule_id
 GROUP BY m.tenant, coalesce(s.name, m.schedule_id::text), m.status
 ORDER BY m.tenant, schedule, m.status
