-- The detector's verdict on a schedule: $2 is the error, NULL when it is valid.
UPDATE schedule
   SET error = $2, checked_at = now()
 WHERE schedule_id = $1
   AND error IS DISTINCT FROM $2::text
