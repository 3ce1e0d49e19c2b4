-- Suppression entries of tenant $1 (NULL: every tenant) whose address contains $2 (NULL:
-- any), newest first, at most $3; each with its schedule's name (its id if the schedule is
-- gone), or NULL for an entry that holds for all the tenant's schedules.
SELECT s.tenant, s.channel, s.address, s.reason, s.source, s.created_at,
       CASE WHEN s.schedule_id IS NOT NULL THEN coalesce(sc.name, s.schedule_id::text) END
           AS schedule
  FROM suppression s
  LEFT JOIN schedule sc ON sc.schedule_id = s.schedule_id
 WHERE ($1::text IS NULL OR s.tenant = $1)
   AND ($2::text IS NULL OR strpos(lower(s.address), lower($2)) > 0)
 ORDER BY s.created_at DESC
 LIMIT $3
