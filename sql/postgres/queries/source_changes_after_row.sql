-- Template: {table}, {key}, {key_type}, {change}, {change_type} are catalog-quoted.
-- Rows after the watermark ($1 change, $2 key), older than now - $3 seconds, $4 at most.
SELECT {key}::text AS key_value, {change}::text AS change_value
  FROM {table}
 WHERE ({change}, {key}) > (CAST($1::text AS {change_type}), CAST($2::text AS {key_type}))
   AND {change} <= now() - make_interval(secs => $3::float8)
 ORDER BY {change}, {key}
 LIMIT $4
