-- Records provider events ($1: a JSON array, one object per event: provider, event_id,
-- message_id, provider_message_id, event, reason, occurred_at, payload, address, suppress),
-- each once: an event already recorded is left as it is. An event naming a message that does
-- not exist is kept without it. Any new event of a message in doubt settles it: the provider
-- has the message, so it is `sent`, with the provider's id; its attempt row says so. A new
-- event marked `suppress` (a hard bounce, a complaint, an unsubscribe) puts its address on
-- the message's tenant's suppression list for that channel, with the event as reason and
-- source. Returns how many events were new, how many messages they settled and how many
-- addresses they suppressed.
WITH e AS (
    SELECT *
      FROM jsonb_to_recordset($1::text::jsonb)
           AS e(provider text, event_id text, message_id bigint, provider_message_id text,
                event text, reason text, occurred_at timestamptz, payload text, address text,
                suppress boolean)
), recorded AS (
    INSERT INTO delivery_event (provider, event_id, message_id, provider_message_id, event,
                                reason, occurred_at, payload)
    SELECT e.provider, e.event_id, m.message_id, e.provider_message_id, e.event, e.reason,
           e.occurred_at, e.payload
      FROM e
      LEFT JOIN message m ON m.message_id = e.message_id
        ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING provider, event_id, message_id, provider_message_id
), suppressed AS (
    INSERT INTO suppression (tenant, channel, address, reason, source)
    SELECT m.tenant, m.channel, e.address,
           e.event || coalesce(': ' || e.reason, ''), e.provider || ':' || e.event_id
      FROM recorded r
      JOIN e ON e.provider = r.provider AND e.event_id = r.event_id
      JOIN message m ON m.message_id = r.message_id
     WHERE e.suppress AND e.address IS NOT NULL
        ON CONFLICT (tenant, channel, lower(address)) DO NOTHING
    RETURNING 1
), settled AS (
    UPDATE message m
       SET status = 'sent',
           provider_message_id = coalesce(m.provider_message_id, r.provider_message_id),
           last_error = NULL,
           sent_at = (SELECT a.started_at
                        FROM delivery_attempt a
                       WHERE a.message_id = m.message_id AND a.attempt = m.send_attempts),
           updated_at = now()
      FROM recorded r
     WHERE m.message_id = r.message_id
       AND m.status = 'in_doubt'
    RETURNING m.message_id, m.send_attempts, m.provider_message_id
), attempt AS (
    UPDATE delivery_attempt a
       SET outcome = 'sent', provider_message_id = s.provider_message_id,
           error = 'settled: the provider reported an event for it; in doubt before: '
                   || coalesce(a.error, 'no reason recorded')
      FROM settled s
     WHERE a.message_id = s.message_id AND a.attempt = s.send_attempts
)
SELECT (SELECT count(*) FROM recorded) AS recorded, (SELECT count(*) FROM settled) AS settled,
       (SELECT count(*) FROM suppressed) AS suppressed
