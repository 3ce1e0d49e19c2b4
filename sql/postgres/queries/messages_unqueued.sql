-- Of schedule $2's rows (keys $3 and change values $4, pairwise) of tenant $1, the ones
-- whose notification identity is not in the queue.
SELECT c.source_key, c.change_version
  FROM unnest($3::text[], $4::text[]) AS c (source_key, change_version)
 WHERE NOT EXISTS (SELECT 1
                     FROM message m
                    WHERE m.tenant = $1
                      AND m.schedule_id = $2
                      AND m.source_key = c.source_key
                      AND m.change_version = c.change_version)
