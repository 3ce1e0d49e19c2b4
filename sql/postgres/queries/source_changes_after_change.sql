-- Template: as source_changes_after_row.sql, for a watermark that has only a time ($1).
SELECT {key}::text AS key_value, {change}::text AS change_value
  FROM {table}
 WHERE {change} > CAST($1::text AS {change_type})
   AND {change} <= now() - make_interval(secs => $2::float8)
 ORDER BY {change}, {key}
 LIMIT $3
