-- The recipient of email @P1 unsubscribes with the one-click link it carried: the address
-- goes on the tenant's suppression list for the message's schedule or, when the schedule says
-- 'tenant', for all the tenant's emails, and the unsubscribe is recorded once as the
-- message's event (provider `herald`). A second click changes nothing. One transaction; the
-- inserts take UPDLOCK, HOLDLOCK on the keys they check, so two clicks cannot both insert.
-- Returns what unsubscribe_target.sql returns, now suppressed; no row: no such email.
SET XACT_ABORT ON;
BEGIN TRANSACTION;

DECLARE @target TABLE (
    message_id  bigint        NOT NULL,
    tenant      nvarchar(128) NOT NULL,
    schedule_id bigint        NOT NULL,
    recipient   nvarchar(320) NOT NULL,
    schedule    nvarchar(200) NOT NULL,
    tenant_wide bit           NOT NULL
);

INSERT INTO @target (message_id, tenant, schedule_id, recipient, schedule, tenant_wide)
SELECT m.message_id, m.tenant, m.schedule_id, m.recipient,
       COALESCE(sc.name, CAST(m.schedule_id AS nvarchar(20))),
       CASE WHEN sc.unsubscribe = N'tenant' THEN 1 ELSE 0 END
  FROM dbo.message AS m
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = m.schedule_id
 WHERE m.message_id = @P1 AND m.channel = N'email' AND m.recipient IS NOT NULL;

INSERT INTO dbo.delivery_event (provider, event_id, message_id, event, reason, occurred_at,
                                payload)
SELECT N'herald', CONCAT(N'unsubscribe:', t.message_id), t.message_id, N'unsubscribe',
       N'one-click', SYSUTCDATETIME(),
       CONCAT(N'{"scope":"', CASE WHEN t.tenant_wide = 1 THEN N'tenant' ELSE N'schedule' END,
              N'"}')
  FROM @target AS t
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.delivery_event AS d WITH (UPDLOCK, HOLDLOCK)
                    WHERE d.provider = N'herald'
                      AND d.event_id = CONCAT(N'unsubscribe:', t.message_id));

INSERT INTO dbo.suppression (tenant, channel, address, reason, source, schedule_id)
SELECT t.tenant, N'email', t.recipient, N'unsubscribe: one-click',
       CONCAT(N'herald:unsubscribe:', t.message_id),
       CASE WHEN t.tenant_wide = 1 THEN NULL ELSE t.schedule_id END
  FROM @target AS t
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.suppression AS s WITH (UPDLOCK, HOLDLOCK)
                    WHERE s.tenant = t.tenant AND s.channel = N'email'
                      AND s.address_lower = LOWER(t.recipient)
                      AND ((t.tenant_wide = 1 AND s.schedule_id IS NULL)
                           OR (t.tenant_wide = 0 AND s.schedule_id = t.schedule_id)));

COMMIT TRANSACTION;

SELECT tenant, schedule, recipient AS address, tenant_wide, CAST(1 AS bit) AS suppressed
  FROM @target;
