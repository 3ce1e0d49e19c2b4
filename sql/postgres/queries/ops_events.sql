-- What the providers reported about messages $1 (bigint[]) after taking them, in order.
SELECT message_id, provider, event, reason, occurred_at, received_at
  FROM delivery_event
 WHERE message_id = ANY($1::bigint[])
 ORDER BY message_id, occurred_at NULLS LAST, received_at
