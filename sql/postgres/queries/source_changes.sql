-- Template: {table}, {key}, {key_type}, {change}, {change_type} are catalog-quoted.
-- One page of a detection pass, inside its REPEATABLE READ snapshot: rows whose change value
-- is at or above the hold-back line $1, after the cursor ($2 change, $3 key; NULL on the
-- first page), in (change, key) order, $7 at most.
-- Rows at or below the frontier ($4 change, $5 key) were read by an earlier pass; they come
-- back only if their transaction may have committed since that pass's snapshot, whose xmin
-- (low 32 bits) is $6: every row visible then has an xmin older than it. With no frontier or
-- no $6, every row comes back. xmin is compared modulo 2^32, as PostgreSQL compares xids,
-- which VACUUM FREEZE leaves in place.
--   fresh      above the frontier: new to the detector;
--   change_at  the change value as an instant (a `timestamp` column holds UTC).
SELECT {key}::text    AS key_value,
       {change}::text AS change_value,
       CAST({change} AS timestamptz) AS change_at,
       ($4::text IS NULL
        OR ({change}, {key}) > (CAST($4::text AS {change_type}), CAST($5::text AS {key_type})))
                      AS fresh
  FROM {table}
 WHERE {change} >= CAST($1::timestamptz AS {change_type})
   AND ($2::text IS NULL
        OR ({change}, {key}) > (CAST($2::text AS {change_type}), CAST($3::text AS {key_type})))
   AND ($4::text IS NULL
        OR $6::bigint IS NULL
        OR ({change}, {key}) > (CAST($4::text AS {change_type}), CAST($5::text AS {key_type}))
        OR (xmin::text::bigint - $6::bigint + 4294967296) % 4294967296 < 2147483648)
 ORDER BY {change}, {key}
 LIMIT $7
