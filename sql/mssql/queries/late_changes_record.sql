-- Record late changes of schedule @P1 (@P2: a JSON array of {"source_key",
-- "change_version"}), found by @P3 ('sweep' or 'audit'); returns how many were not recorded
-- before. Duplicates in the batch count once; NOT EXISTS under UPDLOCK, HOLDLOCK makes two
-- recorders of the same change take turns. Keys and versions compare exactly (the
-- identity's collation, ../notify/030-messages.sql).
INSERT INTO dbo.late_change (schedule_id, source_key, change_version, found_by)
SELECT DISTINCT @P1, c.source_key COLLATE Latin1_General_100_BIN2,
       c.change_version COLLATE Latin1_General_100_BIN2, @P3
  FROM OPENJSON(@P2) WITH (source_key nvarchar(400), change_version nvarchar(64)) AS c
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.late_change AS l WITH (UPDLOCK, HOLDLOCK)
                    WHERE l.schedule_id = @P1
                      AND l.source_key = c.source_key COLLATE Latin1_General_100_BIN2
                      AND l.change_version = c.change_version COLLATE Latin1_General_100_BIN2);

SELECT CAST(@@ROWCOUNT AS bigint) AS recorded;
