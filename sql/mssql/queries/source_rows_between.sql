-- Template: as source_changes.sql. Current rows whose change values lie in [@P1, @P2)
-- (UTC), after the cursor (@P3 change, @P4 key; NULL at first), in (change, key) order,
-- @P5 at most: what the sweep and audits check against the queue. The seek starts at the
-- cursor, else at @P1 (a cursor is a row of this range).
SELECT TOP (@P5)
       CAST({key} AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), {change}, 126) AS change_value,
       CAST({change} AS datetimeoffset(7)) AS change_at
  FROM {table}
 WHERE {change} >= COALESCE(CONVERT({change_type}, @P3, 126), CAST(@P1 AS {change_type}))
   AND {change} < CAST(@P2 AS {change_type})
   AND (@P3 IS NULL
        OR {change} > CONVERT({change_type}, @P3, 126)
        OR {key} > CAST(@P4 AS {key_type}))
 ORDER BY {change}, {key};
