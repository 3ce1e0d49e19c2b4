-- Record the outcome of re-rendering message $1, leased by $2; waiting ($12: for a replica
-- behind the change, or for a slow merge function's turn) is not a render attempt.
UPDATE message
   SET status = $3, recipient = $4, recipient_name = $5, locale = $6, subject = $7,
       body_html = $8, body_text = $9, last_error = $10,
       render_attempts = render_attempts + CASE WHEN $12 THEN 0 ELSE 1 END,
       next_attempt_at = now() + make_interval(secs => $11::float8),
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE message_id = $1
   AND lease_owner = $2
   AND status = 'render_retry'
