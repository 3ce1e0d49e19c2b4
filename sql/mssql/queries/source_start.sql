-- A new schedule's starting point in `poll` mode: the replica's horizon (see
-- source_horizon.sql), else (a secondary that has not redone a commit yet) its clock.
SELECT COALESCE(CASE WHEN secondary.database_id IS NULL THEN SYSDATETIMEOFFSET()
                     WHEN secondary.last_commit > SYSDATETIMEOFFSET() THEN SYSDATETIMEOFFSET()
                     ELSE secondary.last_commit END,
                SYSDATETIMEOFFSET()) AS start
  FROM (VALUES (1)) AS here (one)
 OUTER APPLY (SELECT TOP (1)
                     s.database_id,
                     TODATETIMEOFFSET(s.last_commit_time,
                                      DATEPART(TZOFFSET, SYSDATETIMEOFFSET())) AS last_commit
                FROM sys.dm_hadr_database_replica_states AS s
               WHERE s.database_id = DB_ID()
                 AND s.is_local = 1
                 AND s.is_primary_replica = 0) AS secondary;
