-- Messages to recipient $1, newest first, at most $2, with how many there are in all.
-- Joining the tenants of the schedules walks the (tenant, recipient, created_at) index once
-- per tenant (messages of a tenant with no schedule left are not found).
SELECT m.message_id, count(*) OVER () AS total
  FROM (SELECT DISTINCT tenant FROM schedule) t
  JOIN message m ON m.tenant = t.tenant AND m.recipient = $1
 ORDER BY m.created_at DESC, m.message_id DESC
 LIMIT $2
