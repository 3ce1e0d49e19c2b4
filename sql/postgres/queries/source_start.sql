-- A new schedule's starting point: the replica's horizon, else (a standby that has not
-- replayed a commit since it started) its clock.
SELECT coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp()
                     ELSE clock_timestamp() END,
                clock_timestamp())
