-- Whom the one-click unsubscribe link in email @P1 is about: the message's tenant, schedule
-- (its name, or its id if the schedule is gone) and recipient, whether the link stops all the
-- tenant's emails to the address (the schedule says 'tenant') or only the schedule's, and
-- whether the address is already suppressed that far. No row: no such email.
SELECT m.tenant, COALESCE(sc.name, CAST(m.schedule_id AS nvarchar(20))) AS schedule,
       m.recipient AS address,
       CAST(CASE WHEN sc.unsubscribe = N'tenant' THEN 1 ELSE 0 END AS bit) AS tenant_wide,
       CAST(CASE WHEN EXISTS (
                SELECT 1
                  FROM dbo.suppression AS s
                 WHERE s.tenant = m.tenant AND s.channel = N'email'
                   AND s.address_lower = LOWER(m.recipient)
                   AND (s.schedule_id IS NULL
                        OR (COALESCE(sc.unsubscribe, N'schedule') <> N'tenant'
                            AND s.schedule_id = m.schedule_id)))
            THEN 1 ELSE 0 END AS bit) AS suppressed
  FROM dbo.message AS m
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = m.schedule_id
 WHERE m.message_id = @P1 AND m.channel = N'email' AND m.recipient IS NOT NULL;
