-- Schedule @P2 of tenant @P1, active or not.
SELECT schedule_id, tenant, name, channel, source_schema, source_table, key_column,
       change_column, merge_schema, merge_function, template_name, active, error
  FROM dbo.schedule
 WHERE tenant = @P1
   AND name = @P2;
