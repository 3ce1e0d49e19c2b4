-- Messages whose sender's lease ran out inside a provider call are in doubt.
WITH lost AS (
    UPDATE message
       SET status = 'in_doubt', last_error = 'the sender''s lease ran out during the provider call',
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE status = 'sending' AND lease_expires_at < now()
    RETURNING message_id, send_attempts
), closed AS (
    UPDATE delivery_attempt a
       SET outcome = 'in_doubt', finished_at = now(),
           error = 'the sender''s lease ran out during the provider call'
      FROM lost
     WHERE a.message_id = lost.message_id AND a.attempt = lost.send_attempts
)
SELECT count(*) AS lost FROM lost
