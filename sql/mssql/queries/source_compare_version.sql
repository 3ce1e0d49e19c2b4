-- Template: row @P1's current change value, and how it compares, in the column's own type,
-- with an event's (@P2, ISO 8601): -1 older (the replica has not applied the event's change
-- yet), 0 the same, 1 newer (or NULL: the row changed since). No row: the row is absent.
SELECT CONVERT(nvarchar(40), {change}, 126) AS change_value,
       CASE WHEN {change} IS NULL THEN 1
            WHEN {change} < CONVERT({change_type}, @P2, 126) THEN -1
            WHEN {change} > CONVERT({change_type}, @P2, 126) THEN 1
            ELSE 0 END AS ordering
  FROM {table}
 WHERE {key} = CAST(@P1 AS {key_type});
