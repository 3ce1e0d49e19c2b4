-- Template: {function} and {key_type} are catalog-quoted. The function called for each key
-- of $1 (by position from 1) in one statement, each row as one JSON object; two per key are
-- enough to tell that a function returns more than one.
SELECT k.position::int AS position, m.fields
  FROM unnest($1::text[]) WITH ORDINALITY AS k(key, position)
 CROSS JOIN LATERAL (SELECT to_jsonb(r) AS fields
                       FROM {function}(CAST(k.key AS {key_type})) AS r
                      LIMIT 2) AS m
