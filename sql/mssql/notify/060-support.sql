-- For support: "was this email sent, and when?"
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
       l.found_at AS late_found_at
  FROM dbo.message AS m
  LEFT JOIN dbo.schedule AS s ON s.schedule_id = m.schedule_id
  LEFT JOIN dbo.late_change AS l
         ON l.schedule_id = m.schedule_id
        AND l.source_key = m.source_key
        AND l.change_version = m.change_version;
