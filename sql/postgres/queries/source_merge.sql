-- Template: {function} and {key_type} are catalog-quoted. Each row as one JSON object.
SELECT to_jsonb(m) FROM {function}(CAST($1::text AS {key_type})) AS m
