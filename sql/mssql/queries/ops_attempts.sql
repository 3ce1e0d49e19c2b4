-- Every provider call of messages @P1 (a JSON array of ids), in order.
SELECT message_id, attempt, sender, started_at, finished_at, outcome, http_status,
       provider_message_id, error
  FROM dbo.delivery_attempt
 WHERE message_id IN (SELECT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids)
 ORDER BY message_id, attempt;
