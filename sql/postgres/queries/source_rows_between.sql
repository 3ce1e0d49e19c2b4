-- Template: current rows whose change values lie in [$1, $2), after the cursor ($3 change,
-- $4 key; NULL at first), in (change, key) order, $5 at most: what the sweep and audits
-- check against the queue.
SELECT {key}::text AS key_value, {change}::text AS change_value,
       CAST({change} AS timestamptz) AS change_at
  FROM {table}
 WHERE {change} >= CAST($1::timestamptz AS {change_type})
   AND {change} < CAST($2::timestamptz AS {change_type})
   AND ($3::text IS NULL
        OR ({change}, {key}) > (CAST($3::text AS {change_type}), CAST($4::text AS {key_type})))
 ORDER BY {change}, {key}
 LIMIT $5
