-- In-doubt messages (of tenant $1, or all when NULL), longest in doubt first, at most $2,
-- with how many there are in all.
SELECT message_id, count(*) OVER () AS total
  FROM message
 WHERE status = 'in_doubt'
   AND ($1::text IS NULL OR tenant = $1)
 ORDER BY updated_at, message_id
 LIMIT $2
