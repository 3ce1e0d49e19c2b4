UPDATE message
   SET status = 'suppressed', last_error = 'the recipient is on the suppression list',
       lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE message_id = $1 AND lease_owner = $2 AND status = 'queued'
