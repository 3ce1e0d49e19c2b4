-- Whom the one-click unsubscribe link in email $1 is about: the message's tenant, schedule
-- (its name, or its id if the schedule is gone) and recipient, whether the link stops all the
-- tenant's emails to the address (the schedule says 'tenant') or only the schedule's, and
-- whether the address is already suppressed that far. No row: no such email.
SELECT m.tenant, coalesce(sc.name, m.schedule_id::text) AS schedule, m.recipient AS address,
       sc.unsubscribe IS NOT DISTINCT FROM 'tenant' AS tenant_wide,
       EXISTS (SELECT 1
                 FROM suppression s
                WHERE s.tenant = m.tenant AND s.channel = 'email'
                  AND lower(s.address) = lower(m.recipient)
                  AND (s.schedule_id IS NULL
                       OR (sc.unsubscribe IS DISTINCT FROM 'tenant'
                           AND s.schedule_id = m.schedule_id))) AS suppressed
  FROM message m
  LEFT JOIN schedule sc ON sc.schedule_id = m.schedule_id
 WHERE m.message_id = $1 AND m.channel = 'email' AND m.recipient IS NOT NULL
