-- For support: "was this email sent, and when?" (and what the provider said of it since).
-- After every table it reads.
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
       l.found_at AS late_found_at,
       e.event AS last_event,       -- the provider's latest word: delivered, bounce, …
       e.reason AS last_event_reason,
       e.occurred_at AS last_event_at
  FROM message m
  LEFT JOIN schedule s USING (schedule_id)
  LEFT JOIN late_change l USING (schedule_id, source_key, change_version)
  LEFT JOIN LATERAL (SELECT d.event, d.reason, d.occurred_at
                       FROM delivery_event d
                      WHERE d.message_id = m.message_id
                      -- within a second, by the lifecycle: processed, deferred, sent or
                      -- delivered, then the rest (bounce, spamreport, undelivered, …)
                      ORDER BY d.occurred_at DESC NULLS LAST,
                               CASE WHEN d.event = 'processed' THEN 0
                                    WHEN d.event = 'deferred' THEN 1
                                    WHEN d.event IN ('sent', 'delivered') THEN 2
                                    ELSE 3 END DESC,
                               d.received_at DESC
                      LIMIT 1) e ON true;
