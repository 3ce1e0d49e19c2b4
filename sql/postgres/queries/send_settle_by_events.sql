-- In-doubt messages their provider has reported on since their last call began are settled by
-- the latest report: the provider has them, so they are `sent` with its id, or `failed` with
-- its reason when it reports it could not deliver them (Twilio `failed` / `undelivered`,
-- SendGrid `dropped` / `bounce`). Never resent either way. Only a report on the message's own
-- channel counts. Their attempt rows say how they were settled. Returns each settled message.
WITH latest AS (
    SELECT DISTINCT ON (m.message_id)
           m.message_id, m.send_attempts, a.started_at, d.event, d.reason,
           d.provider_message_id, d.provider,
           d.event IN ('failed', 'undelivered', 'dropped', 'bounce') AS undelivered
      FROM message m
      JOIN delivery_attempt a ON a.message_id = m.message_id AND a.attempt = m.send_attempts
      JOIN delivery_event d ON d.message_id = m.message_id AND d.received_at >= a.started_at
     WHERE m.status = 'in_doubt'
       AND d.provider = CASE m.channel WHEN 'email' THEN 'sendgrid' ELSE 'twilio' END
     -- the latest; within one post and second, by the lifecycle (see message_log)
     ORDER BY m.message_id, d.received_at DESC, d.occurred_at DESC NULLS LAST,
              CASE WHEN d.event = 'processed' THEN 0
                   WHEN d.event = 'deferred' THEN 1
                   WHEN d.event IN ('sent', 'delivered') THEN 2
                   ELSE 3 END DESC
), settled AS (
    UPDATE message m
       SET status = CASE WHEN l.undelivered THEN 'failed' ELSE 'sent' END,
           provider_message_id = coalesce(m.provider_message_id, l.provider_message_id),
           last_error = CASE WHEN l.undelivered
                             THEN 'the provider reported ' || l.event
                                  || coalesce(': ' || l.reason, '') END,
           sent_at = CASE WHEN l.undelivered THEN NULL ELSE l.started_at END,
           updated_at = now()
      FROM latest l
     WHERE m.message_id = l.message_id
       AND m.send_attempts = l.send_attempts
       AND m.status = 'in_doubt'
    RETURNING m.message_id, m.channel, m.status, m.send_attempts, m.provider_message_id
), attempt AS (
    UPDATE delivery_attempt a
       SET outcome = s.status, provider_message_id = s.provider_message_id,
           error = 'settled: the provider reported ' || l.event
                   || coalesce(': ' || l.reason, '') || '; in doubt before: '
                   || coalesce(a.error, 'no reason recorded')
      FROM settled s
      JOIN latest l ON l.message_id = s.message_id
     WHERE a.message_id = s.message_id AND a.attempt = s.send_attempts
)
SELECT message_id, channel, status FROM settled
