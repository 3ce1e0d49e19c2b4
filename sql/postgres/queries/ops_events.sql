-- What the providers reported about messages $1 (bigint[]) after taking them, in order.
SELECT message_id, provider, event, reason, occurred_at, received_at
  FROM delivery_event
 WHERE message_id = ANY($1::bigint[])
 -- within a second, what follows `processed` and `deferred` comes after them
 ORDER BY message_id, occurred_at NULLS LAST, received_at,
          CASE event WHEN 'processed' THEN 0 WHEN 'deferred' THEN 1 ELSE 2 END
