-- Schedule @P1's mark, whoever owns it.
SELECT hold_back, change_value, key_value, position, watching_since, source_definition
  FROM dbo.detector_watermark
 WHERE schedule_id = @P1;
