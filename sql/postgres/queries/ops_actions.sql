-- Every operator action on messages $1 (bigint[]), in order.
SELECT action, message_id, schedule_id AS action_schedule_id, from_status, to_status, actor,
       reason, acted_at
  FROM operator_action
 WHERE message_id = ANY($1::bigint[])
 ORDER BY acted_at, action_id
