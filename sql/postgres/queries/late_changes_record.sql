-- Record late changes of schedule $1 (keys $2 and change values $3, pairwise), found by $4.
INSERT INTO late_change (schedule_id, source_key, change_version, found_by)
SELECT $1, c.source_key, c.change_version, $4
  FROM unnest($2::text[], $3::text[]) AS c (source_key, change_version)
    ON CONFLICT DO NOTHING
