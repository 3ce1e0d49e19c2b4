-- In-doubt messages on channel $1 whose last call began within the last $2 seconds, the
-- oldest first, at most $3: what the sender looks for at the provider.
SELECT m.message_id, m.send_attempts AS attempt, coalesce(m.account, m.channel) AS account, m.recipient, m.body_text,
       a.started_at, a.finished_at
  FROM message m
  JOIN delivery_attempt a ON a.message_id = m.message_id AND a.attempt = m.send_attempts
 WHERE m.status = 'in_doubt'
   AND m.channel = $1
   AND a.started_at > now() - make_interval(secs => $2::float8)
 ORDER BY a.started_at
 LIMIT $3
