-- Messages $1 (bigint[]) as support sees them: the schedule's name, the change event's
-- place on the topic, its provider account, and whether the sweep or an audit found the
-- change late.
SELECT m.message_id, m.tenant, m.schedule_id, s.name AS schedule, m.source_key,
       m.change_version, m.channel,
       coalesce(m.account, m.channel) AS account, m.status, m.recipient, m.subject,
       m.render_attempts,
       m.send_attempts, m.provider_message_id, m.last_error, m.event_partition,
       m.event_offset, m.detected_at, l.found_by AS late_found_by,
       l.found_at AS late_found_at, m.created_at, m.updated_at, m.next_attempt_at, m.sent_at
  FROM message m
  LEFT JOIN schedule s USING (schedule_id)
  LEFT JOIN late_change l USING (schedule_id, source_key, change_version)
 WHERE m.message_id = ANY($1::bigint[])
