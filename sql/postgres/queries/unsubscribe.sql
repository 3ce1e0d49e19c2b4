-- The recipient of email $1 unsubscribes with the one-click link it carried: the address goes
-- on the tenant's suppression list for the message's schedule or, when the schedule says
-- 'tenant', for all the tenant's emails, and the unsubscribe is recorded once as the
-- message's event (provider `herald`). A second click changes nothing. Returns what
-- unsubscribe_target.sql returns, now suppressed; no row: no such email.
WITH target AS (
    SELECT m.message_id, m.tenant, m.schedule_id, m.recipient,
           coalesce(sc.name, m.schedule_id::text) AS schedule,
           sc.unsubscribe IS NOT DISTINCT FROM 'tenant' AS tenant_wide
      FROM message m
      LEFT JOIN schedule sc ON sc.schedule_id = m.schedule_id
     WHERE m.message_id = $1 AND m.channel = 'email' AND m.recipient IS NOT NULL
), event AS (
    INSERT INTO delivery_event (provider, event_id, message_id, event, reason, occurred_at,
                                payload)
    SELECT 'herald', 'unsubscribe:' || message_id, message_id, 'unsubscribe', 'one-click',
           now(),
           json_build_object('scope', CASE WHEN tenant_wide THEN 'tenant' ELSE 'schedule' END)::text
      FROM target
        ON CONFLICT (provider, event_id) DO NOTHING
), entry AS (
    INSERT INTO suppression (tenant, channel, address, reason, source, schedule_id)
    SELECT tenant, 'email', recipient, 'unsubscribe: one-click',
           'herald:unsubscribe:' || message_id, CASE WHEN NOT tenant_wide THEN schedule_id END
      FROM target
        ON CONFLICT (tenant, channel, lower(address), coalesce(schedule_id, 0)) DO NOTHING
)
SELECT tenant, schedule, recipient AS address, tenant_wide, true AS suppressed FROM target
