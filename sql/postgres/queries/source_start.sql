-- Template: a new schedule's starting point, replica now - $1 seconds, in the column's type.
SELECT CAST(now() - make_interval(secs => $1::float8) AS {change_type})::text
