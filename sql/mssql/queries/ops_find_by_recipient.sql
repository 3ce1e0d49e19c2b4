-- Messages to recipient @P1, newest first, at most @P2, with how many there are in all.
-- Joining the tenants of the schedules seeks the (tenant, recipient, created_at) index once
-- per tenant (messages of a tenant with no schedule left are not found).
SELECT TOP (@P2) m.message_id, COUNT_BIG(*) OVER () AS total
  FROM (SELECT DISTINCT tenant FROM dbo.schedule) AS t
  JOIN dbo.message AS m ON m.tenant = t.tenant AND m.recipient = @P1
 ORDER BY m.created_at DESC, m.message_id DESC;
