-- Template: row $1's current change value, and how it compares with an event's ($2):
-- -1 older (the replica has not applied the event's change yet), 0 the same, 1 newer (or
-- NULL: the row changed since). No row: the row is absent.
SELECT {change}::text AS change_value,
       CASE WHEN {change} IS NULL THEN 1
            WHEN {change} < CAST($2::text AS {change_type}) THEN -1
            WHEN {change} > CAST($2::text AS {change_type}) THEN 1
            ELSE 0 END AS ordering
  FROM {table}
 WHERE {key} = CAST($1::text AS {key_type})
