-- Messages of tenant $1's source row $2 (every schedule, every change version), newest
-- first, at most $3, with how many there are in all. Joining the tenant's schedules walks
-- the identity index once per schedule.
SELECT m.message_id, count(*) OVER () AS total
  FROM schedule s
  JOIN message m
    ON m.tenant = s.tenant AND m.schedule_id = s.schedule_id AND m.source_key = $2
 WHERE s.tenant = $1
 ORDER BY m.created_at DESC, m.message_id DESC
 LIMIT $3
