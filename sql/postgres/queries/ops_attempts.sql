-- Every provider call of messages $1 (bigint[]), in order.
SELECT message_id, attempt, sender, started_at, finished_at, outcome, http_status,
       provider_message_id, error
  FROM delivery_attempt
 WHERE message_id = ANY($1::bigint[])
 ORDER BY message_id, attempt
