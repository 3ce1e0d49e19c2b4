-- Whether transaction id $1 has been assigned: an error ("transaction ID … is in the
-- future", SQLSTATE 22023) if not, as far as this server knows (on a standby: has replayed).
SELECT pg_xact_status($1::text::xid8)
