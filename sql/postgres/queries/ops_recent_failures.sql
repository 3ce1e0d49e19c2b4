-- The latest failures: messages `failed`, `render_failed` or `in_doubt` whose status was set
-- within the last $1 seconds, newest first, at most $2, with how many there are in all.
-- Read through the message_failures partial index, so the cost follows the window.
SELECT message_id, count(*) OVER () AS total
  FROM message
 WHERE status IN ('failed', 'render_failed', 'in_doubt')
   AND updated_at > now() - make_interval(secs => $1::float8)
 ORDER BY updated_at DESC, message_id DESC
 LIMIT $2
