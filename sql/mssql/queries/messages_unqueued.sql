-- Of schedule @P2's rows of tenant @P1 (@P3: a JSON array of {"source_key", "change_version"}),
-- the ones whose notification identity is not in the queue: each probe is a seek on
-- message_identity, comparing exactly (the identity's collation).
SELECT c.source_key, c.change_version
  FROM OPENJSON(@P3) WITH (source_key nvarchar(400), change_version nvarchar(64)) AS c
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.message AS m
                    WHERE m.tenant = @P1
                      AND m.schedule_id = @P2
                      AND m.source_key = c.source_key COLLATE Latin1_General_100_BIN2
                      AND m.change_version = c.change_version COLLATE Latin1_General_100_BIN2);
