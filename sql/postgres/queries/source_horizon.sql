-- Where the replica stands, read before a poll's snapshot is taken:
--   horizon      the primary's clock at the last commit a standby has replayed (NULL until
--                it has replayed one), or the clock itself on a primary;
--   replica_now  this server's own clock, where a new schedule starts when there is no
--                horizon yet;
--   xid_floor    a lower bound of the next transaction id (the snapshot's xmax);
--   system_id    the cluster's identity, shared by a primary and its physical standbys.
SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp()
            ELSE clock_timestamp() END                     AS horizon,
       clock_timestamp()                                   AS replica_now,
       pg_snapshot_xmax(pg_current_snapshot())::text      AS xid_floor,
       (SELECT system_identifier FROM pg_control_system())::text AS system_id
