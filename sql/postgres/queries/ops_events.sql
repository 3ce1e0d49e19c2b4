-- What the providers reported about messages $1 (bigint[]) after taking them, in order.
SELECT message_id, provider, event, reason, occurred_at, received_at
  FROM delivery_event
 WHERE message_id = ANY($1::bigint[])
 -- within a second, by the lifecycle: processed, deferred, sent or delivered, then the rest
 -- (bounce, spamreport, undelivered, …)
 ORDER BY message_id, occurred_at NULLS LAST,
          CASE WHEN event = 'processed' THEN 0
               WHEN event = 'deferred' THEN 1
               WHEN event IN ('sent', 'delivered') THEN 2
               ELSE 3 END,
          received_at
