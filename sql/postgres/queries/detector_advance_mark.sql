-- Move schedule $2's mark to hold-back line $3, frontier ($4 change, $5 key), position $6,
-- start $7 and source definition $8, if detector $1 still owns it. Returns the schedule's
-- row when it moved.
UPDATE detector_watermark
   SET hold_back = $3, change_value = $4, key_value = $5, position = $6,
       watching_since = $7, source_definition = $8, updated_at = now()
 WHERE schedule_id = $2
   AND owner = $1
RETURNING schedule_id
