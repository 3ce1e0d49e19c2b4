-- Record late changes of schedule $1 ($2: a JSON array of {"source_key", "change_version"}),
-- found by $3 ('sweep' or 'audit'); returns how many were not recorded before.
WITH recorded AS (
    INSERT INTO late_change (schedule_id, source_key, change_version, found_by)
    SELECT $1, c.source_key, c.change_version, $3
      FROM jsonb_to_recordset($2::text::jsonb) AS c (source_key text, change_version text)
        ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) AS recorded FROM recorded
