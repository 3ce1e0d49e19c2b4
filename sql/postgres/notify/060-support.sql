-- For support: "was this email sent, and when?"
--   SELECT * FROM message_log WHERE recipient = 'ada@example.com' ORDER BY created_at DESC;

CREATE OR REPLACE VIEW message_log AS
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
  FROM message m
  LEFT JOIN schedule s USING (schedule_id)
  LEFT JOIN late_change l USING (schedule_id, source_key, change_version);
