-- Suppression entries of tenant @P1 (NULL: every tenant) whose address contains @P2 (NULL:
-- any), newest first, at most @P3; each with its schedule's name (its id if the schedule is
-- gone), or NULL for an entry that holds for all the tenant's schedules.
SELECT TOP (@P3) s.tenant, s.channel, s.address, s.reason, s.source, s.created_at,
       CASE WHEN s.schedule_id IS NOT NULL
            THEN COALESCE(sc.name, CAST(s.schedule_id AS nvarchar(20))) END AS schedule
  FROM dbo.suppression AS s
  LEFT JOIN dbo.schedule AS sc ON sc.schedule_id = s.schedule_id
 WHERE (@P1 IS NULL OR s.tenant = @P1)
   AND (@P2 IS NULL OR CHARINDEX(LOWER(@P2), s.address_lower) > 0)
 ORDER BY s.created_at DESC;
