-- For support: "was this email sent, and when?" (and what the provider said of it since).
-- After every table it reads.
--   SELECT * FROM dbo.message_log WHERE recipient = N'ada@example.com' ORDER BY created_at DESC;

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

CREATE OR ALTER VIEW dbo.message_log AS
SELECT m.message_id,
       m.tenant,
       s.name AS schedule,
       m.channel,
       m.recipient,
       m.subject,
       m.status,
       m.created_at,
       m.sent_at,
       m.provider_message_id,
       m.send_attempts,
       m.last_error,
       m.source_key,
       m.change_version,
       m.detected_at,
       l.found_by AS late_found_by, -- set when the sweep or an audit found the change late
       l.found_at AS late_found_at,
       e.event AS last_event,       -- the provider's latest word: delivered, bounce, …
       e.reason AS last_event_reason,
       e.occurred_at AS last_event_at
  FROM dbo.message AS m
  LEFT JOIN dbo.schedule AS s ON s.schedule_id = m.schedule_id
  LEFT JOIN dbo.late_change AS l
         ON l.schedule_id = m.schedule_id
        AND l.source_key = m.source_key
        AND l.change_version = m.change_version
  OUTER APPLY (SELECT TOP (1) d.event, d.reason, d.occurred_at
                 FROM dbo.delivery_event AS d
                WHERE d.message_id = m.message_id
                -- within a second, by the lifecycle: processed, deferred, sent or
                -- delivered, then the rest (bounce, spamreport, undelivered, …)
                ORDER BY CASE WHEN d.occurred_at IS NULL THEN 1 ELSE 0 END, d.occurred_at DESC,
                         CASE WHEN d.event = N'processed' THEN 0
                              WHEN d.event = N'deferred' THEN 1
                              WHEN d.event IN (N'sent', N'delivered') THEN 2
                              ELSE 3 END DESC,
                         d.received_at DESC) AS e;
