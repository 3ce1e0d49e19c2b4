-- Template: for each event of @P1 (a JSON array of objects: position, key, version), its row's
-- current change value and how it compares, in the column's own type, with the event's
-- version (ISO 8601): -1 older (the replica has not applied the event's change yet), 0 the
-- same, 1 newer (or NULL: the row changed since). A position without a row: the row is absent.
-- A string key is compared in the key column's own collation ({key_collate}: empty for other
-- types): the events' text has the database's, and two collations would not compare.
SELECT e.position,
       CONVERT(nvarchar(40), t.{change}, 126) AS change_value,
       CASE WHEN t.{change} IS NULL THEN 1
            WHEN t.{change} < CONVERT({change_type}, e.version, 126) THEN -1
            WHEN t.{change} > CONVERT({change_type}, e.version, 126) THEN 1
            ELSE 0 END AS ordering
  FROM OPENJSON(@P1) WITH (position int, [key] nvarchar(max), version nvarchar(64)) AS e
  JOIN {table} AS t ON t.{key} = CAST(e.[key] AS {key_type}){key_collate};
