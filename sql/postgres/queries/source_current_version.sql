-- Template: the row's current change value, to tell whether an event's version is still
-- the latest. $1 is the key.
SELECT {change}::text FROM {table} WHERE {key} = CAST($1::text AS {key_type})
