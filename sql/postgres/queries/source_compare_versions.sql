-- Template: for each event (keys $1 and versions $2, by position from 1), its row's current
-- change value and how it compares with the event's version: -1 older (the replica has not
-- applied the event's change yet), 0 the same, 1 newer (or NULL: the row changed since). A
-- position without a row: the row is absent.
SELECT e.position::int AS position,
       t.{change}::text AS change_value,
       CASE WHEN t.{change} IS NULL THEN 1
            WHEN t.{change} < CAST(e.version AS {change_type}) THEN -1
            WHEN t.{change} > CAST(e.version AS {change_type}) THEN 1
            ELSE 0 END AS ordering
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(key, version, position)
  JOIN {table} AS t ON t.{key} = CAST(e.key AS {key_type})
