-- The open part of the queue, per tenant, schedule and status: messages waiting to be
-- rendered again, to be sent, inside a provider call, or in doubt (waiting for an
-- operator), with the age in seconds of the oldest. Each status is read through its own
-- filtered index, so the cost follows the open messages, not the table.
SELECT m.tenant, COALESCE(s.name, CAST(m.schedule_id AS nvarchar(20))) AS schedule, m.status,
       CAST(COUNT(*) AS bigint) AS messages,
       CAST(DATEDIFF_BIG(millisecond, MIN(m.created_at), SYSUTCDATETIME()) / 1000.0 AS float)
           AS oldest_seconds
  FROM (SELECT tenant, schedule_id, status, created_at FROM dbo.message WHERE status = N'render_retry'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM dbo.message WHERE status = N'queued'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM dbo.message WHERE status = N'sending'
        UNION ALL
        SELECT tenant, schedule_id, status, created_at FROM dbo.message WHERE status = N'in_doubt') AS m
  LEFT JOIN dbo.schedule AS s ON s.schedule_id = m.schedule_id
 GROUP BY m.tenant, COALESCE(s.name, CAST(m.schedule_id AS nvarchar(20))), m.status
 ORDER BY m.tenant, schedule, m.status;
