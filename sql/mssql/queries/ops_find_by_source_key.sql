-- Messages of tenant @P1's source row @P2 (every schedule, every change version), newest
-- first, at most @P3, with how many there are in all. Joining the tenant's schedules seeks
-- the identity index once per schedule.
SELECT TOP (@P3) m.message_id, COUNT_BIG(*) OVER () AS total
  FROM dbo.schedule AS s
  JOIN dbo.message AS m
    ON m.tenant = s.tenant AND m.schedule_id = s.schedule_id AND m.source_key = @P2
 WHERE s.tenant = @P1
 ORDER BY m.created_at DESC, m.message_id DESC;
