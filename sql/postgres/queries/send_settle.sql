-- In-doubt message $1 whose last call was attempt $2 is `sent` after all: its provider shows
-- it with id $3 ($4 says how it was found). Not if that id is already another message's of
-- the same recipient (two identical messages: each provider message settles one), nor if
-- the message moved on meanwhile. Its attempt row keeps why it was in doubt. Returns how
-- many were settled.
WITH settled AS (
    UPDATE message m
       SET status = 'sent', provider_message_id = $3, last_error = NULL,
           sent_at = (SELECT a.started_at
                        FROM delivery_attempt a
                       WHERE a.message_id = m.message_id AND a.attempt = m.send_attempts),
           updated_at = now()
     WHERE m.message_id = $1
       AND m.send_attempts = $2
       AND m.status = 'in_doubt'
       AND NOT EXISTS (SELECT 1
                         FROM message o
                        WHERE o.tenant = m.tenant
                          AND o.recipient = m.recipient
                          AND o.provider_message_id = $3)
    RETURNING m.message_id
), attempt AS (
    UPDATE delivery_attempt a
       SET outcome = 'sent', provider_message_id = $3,
           error = $4 || '; in doubt before: ' || coalesce(a.error, 'no reason recorded')
      FROM settled
     WHERE a.message_id = settled.message_id AND a.attempt = $2
)
SELECT count(*) AS settled FROM settled
