-- The first statement of a poll's REPEATABLE READ transaction: takes its snapshot, whose
-- xmin is the oldest transaction still running in it (every older one has finished).
SELECT pg_snapshot_xmin(pg_current_snapshot())::text
