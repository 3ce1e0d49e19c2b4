-- Template: the row's current change value, to tell whether an event's version is still
-- the latest. @P1 is the key.
SELECT CONVERT(nvarchar(40), {change}, 126) AS change_value
  FROM {table}
 WHERE {key} = CAST(@P1 AS {key_type});
