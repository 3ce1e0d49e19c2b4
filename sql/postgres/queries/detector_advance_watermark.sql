-- Move schedule $2's watermark to ($3, $4) if detector $1 still owns it.
UPDATE detector_watermark
   SET change_value = $3, key_value = $4, updated_at = now()
 WHERE schedule_id = $2
   AND owner = $1
