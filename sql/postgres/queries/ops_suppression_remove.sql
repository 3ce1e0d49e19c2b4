-- Operator $4 removes address $3 (any letter case) from tenant $1's suppression list for
-- channel $2, because $5: the entry for all the tenant's schedules, or with $6 the entry for
-- that schedule only (its name, or its id, as the list shows a deleted schedule). The entry moves to suppression_removed with who and why.
-- Returns the removed entry (none if the address was not on the list).
WITH removed AS (
    DELETE FROM suppression s
     WHERE s.tenant = $1 AND s.channel = $2 AND lower(s.address) = lower($3)
       AND CASE WHEN $6::text IS NULL THEN s.schedule_id IS NULL
                ELSE s.schedule_id = coalesce((SELECT schedule_id FROM schedule
                                                WHERE tenant = $1 AND name = $6),
                                               CASE WHEN $6 ~ '^[0-9]{1,18}$'
                                                    THEN $6::bigint END) END
    RETURNING s.tenant, s.channel, s.address, s.reason, s.source, s.created_at, s.schedule_id
), kept AS (
    INSERT INTO suppression_removed (tenant, channel, address, reason, source, created_at,
                                     schedule_id, removed_by, removed_why)
    SELECT tenant, channel, address, reason, source, created_at, schedule_id, $4, $5
      FROM removed
)
SELECT tenant, channel, address, reason, source, created_at,
       CASE WHEN schedule_id IS NOT NULL THEN $6::text END AS schedule
  FROM removed
