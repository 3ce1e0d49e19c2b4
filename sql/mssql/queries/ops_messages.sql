-- Messages @P1 (a JSON array of ids) as support sees them: the schedule's name, the change
-- event's place on the topic, its provider account, and whether the sweep or an audit found
-- the change late.
SELECT m.message_id, m.tenant, m.schedule_id, s.name AS schedule, m.source_key,
       m.change_version, m.channel,
       COALESCE(m.account, m.channel) AS account, m.status, m.recipient, m.subject,
       m.render_attempts,
       m.send_attempts, m.provider_message_id, m.last_error, m.event_partition,
       m.event_offset, m.detected_at, l.found_by AS late_found_by,
       l.found_at AS late_found_at, m.created_at, m.updated_at, m.next_attempt_at, m.sent_at
  FROM dbo.message AS m
  LEFT JOIN dbo.schedule AS s ON s.schedule_id = m.schedule_id
  LEFT JOIN dbo.late_change AS l
    ON l.schedule_id = m.schedule_id
   AND l.source_key = m.source_key
   AND l.change_version = m.change_version
 WHERE m.message_id IN (SELECT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids);
