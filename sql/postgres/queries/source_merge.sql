-- Template: {function} and {key_type} are catalog-quoted. Each row as one JSON object; two
-- are enough to tell that a function returns more than one.
SELECT to_jsonb(m) FROM {function}(CAST($1::text AS {key_type})) AS m LIMIT 2
