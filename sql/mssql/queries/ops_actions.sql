-- Every operator action on messages @P1 (a JSON array of ids), in order.
SELECT action, message_id, schedule_id AS action_schedule_id, from_status, to_status, actor,
       reason, acted_at
  FROM dbo.operator_action
 WHERE message_id IN (SELECT ids.message_id FROM OPENJSON(@P1) WITH (message_id bigint '$') AS ids)
 ORDER BY acted_at, action_id;
