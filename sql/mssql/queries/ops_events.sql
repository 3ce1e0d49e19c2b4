-- What the providers reported about messages @P1 (a JSON array of ids) after taking them, in
-- order.
SELECT message_id, provider, event, reason, occurred_at, received_at
  FROM dbo.delivery_event
 WHERE message_id IN (SELECT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids)
 -- within a second, by the lifecycle: processed, deferred, sent or delivered, then the rest
 -- (bounce, spamreport, undelivered, …)
 ORDER BY message_id, CASE WHEN occurred_at IS NULL THEN 1 ELSE 0 END, occurred_at,
          CASE WHEN event = N'processed' THEN 0
               WHEN event = N'deferred' THEN 1
               WHEN event IN (N'sent', N'delivered') THEN 2
               ELSE 3 END,
          received_at;
