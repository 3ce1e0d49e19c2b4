-- At sender $1's start: its messages caught inside a provider call are in doubt (never
-- resent automatically). Returns how many went in doubt.
WITH lost AS (
    UPDATE message
       SET status = 'in_doubt', last_error = 'the sender stopped during the provider call',
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE status = 'sending' AND lease_owner = $1
    RETURNING message_id, send_attempts
), closed AS (
    UPDATE delivery_attempt a
       SET outcome = 'in_doubt', finished_at = now(),
           error = 'the sender stopped during the provider call'
      FROM lost
     WHERE a.message_id = lost.message_id AND a.attempt = lost.send_attempts
)
SELECT count(*) AS lost FROM lost
