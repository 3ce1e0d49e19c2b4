-- Of schedule $2's rows of tenant $1 ($3: a JSON array of {"source_key", "change_version"}),
-- the ones whose notification identity is not in the queue.
SELECT c.source_key, c.change_version
  FROM jsonb_to_recordset($3::text::jsonb) AS c (source_key text, change_version text)
 WHERE NOT EXISTS (SELECT 1
                     FROM message m
                    WHERE m.tenant = $1
                      AND m.schedule_id = $2
                      AND m.source_key = c.source_key
                      AND m.change_version = c.change_version)
