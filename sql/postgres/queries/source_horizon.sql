-- Where the replica stands, read before a poll's snapshot is taken:
--   horizon      the primary's clock at the last commit a standby has replayed (NULL until
--                it has replayed one), or the clock itself on a primary;
--   system_id    the cluster's identity, shared by a primary and its physical standbys.
SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp()
            ELSE clock_timestamp() END                     AS horizon,
       (SELECT system_identifier FROM pg_control_system())::text AS system_id
