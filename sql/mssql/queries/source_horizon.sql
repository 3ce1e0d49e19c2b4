-- The replica's horizon for a `poll` mode pass, as a UTC instant: every transaction that
-- committed on the primary at or before it is visible here. Read before the pass's pages.
-- * On an Always On secondary: sys.dm_hadr_database_replica_states.last_commit_time of the
--   local database. There it is the time of the last commit record redone (last_commit_lsn
--   is "the last commit record that was redone"), and "the same as on the primary": the
--   primary's clock, read from the commit record, not the secondary's own. It is a datetime
--   in server local time (the documentation names no zone; Debezium reads the commit times
--   of change data capture the same way, with the server's current offset), converted with
--   this replica's current UTC offset: the replicas must share a time zone (UTC is best).
--   NULL until the secondary has redone a commit: nothing is proven then.
-- * Elsewhere (a primary, or a server outside any availability group): SYSDATETIMEOFFSET(),
--   since every transaction committed by now is visible to the next statement.
-- Never later than this replica's clock, which keeps a wrong offset (a DST change between
-- the commit and now) from putting the horizon in the future.
-- The DMV needs VIEW SERVER STATE on the replica (granted to the detector's login).
SELECT CASE WHEN secondary.database_id IS NULL THEN SYSDATETIMEOFFSET()
            WHEN secondary.last_commit > SYSDATETIMEOFFSET() THEN SYSDATETIMEOFFSET()
            ELSE secondary.last_commit END AS horizon
  FROM (VALUES (1)) AS here (one)
 OUTER APPLY (SELECT TOP (1)
                     s.database_id,
                     TODATETIMEOFFSET(s.last_commit_time,
                                      DATEPART(TZOFFSET, SYSDATETIMEOFFSET())) AS last_commit
                FROM sys.dm_hadr_database_replica_states AS s
               WHERE s.database_id = DB_ID()
                 AND s.is_local = 1
                 AND s.is_primary_replica = 0) AS secondary;
