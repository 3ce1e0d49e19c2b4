-- Records provider events ($1: a JSON array, one object per event: provider, account,
-- event_id, message_id, provider_message_id, event, reason, occurred_at, payload, address,
-- suppress), each once: an event already recorded is left as it is. An event without our
-- message id is matched through the provider's id of the message, as an earlier event named
-- it. An event naming a message that does not exist, or that is not its account's (the
-- account whose signature it carries), is kept without it. A new event marked
-- `suppress` (a hard bounce, a complaint, an unsubscribe) about its message's own recipient
-- puts the address on the message's tenant's suppression list for that channel (all its
-- schedules), with the
-- event as reason and source (messages in doubt are settled by send_settle_by_events.sql).
-- Returns how many events were new and how many addresses they suppressed.
WITH e AS (
    SELECT *
      FROM jsonb_to_recordset($1::text::jsonb)
           AS e(provider text, account text, event_id text, message_id bigint,
                provider_message_id text, event text, reason text, occurred_at timestamptz,
                payload text, address text, suppress boolean)
), recorded AS (
    INSERT INTO delivery_event (provider, event_id, message_id, provider_message_id, event,
                                reason, occurred_at, payload)
    SELECT e.provider, e.event_id, m.message_id, e.provider_message_id, e.event, e.reason,
           e.occurred_at, e.payload
      FROM e
      LEFT JOIN message m
             ON m.message_id = coalesce(e.message_id,
                                        (SELECT d.message_id
                                           FROM delivery_event d
                                          WHERE d.provider = e.provider
                                            AND d.provider_message_id = e.provider_message_id
                                            AND d.message_id IS NOT NULL
                                          LIMIT 1))
            AND coalesce(m.account, m.channel) = e.account
        ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING provider, event_id, message_id, provider_message_id
), suppressed AS (
    INSERT INTO suppression (tenant, channel, address, reason, source)
    SELECT m.tenant, m.channel, e.address,
           e.event || coalesce(': ' || e.reason, ''), e.provider || ':' || e.event_id
      FROM recorded r
      JOIN e ON e.provider = r.provider AND e.event_id = r.event_id
      JOIN message m ON m.message_id = r.message_id
     WHERE e.suppress AND lower(e.address) = lower(m.recipient)
        ON CONFLICT (tenant, channel, lower(address), coalesce(schedule_id, 0)) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM recorded) AS recorded, (SELECT count(*) FROM suppressed) AS suppressed
