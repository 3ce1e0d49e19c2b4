-- The first transaction id this server has not seen assigned (on a standby: not replayed
-- any record of), read after the horizon: every id from it on was assigned later. age()
-- counts from it, needs no transaction id of its own, and raises nothing; it is the
-- distance from the snapshot's xmax, so the next id is xmax + ahead.
SELECT pg_snapshot_xmax(s)::text      AS xmax,
       age(pg_snapshot_xmax(s)::xid)  AS ahead
  FROM pg_current_snapshot() AS s
