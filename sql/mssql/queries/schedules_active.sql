SELECT schedule_id, tenant, name, channel, source_schema, source_table, key_column,
       change_column, merge_schema, merge_function, template_name, active, error
  FROM dbo.schedule
 WHERE active = 1
 ORDER BY schedule_id;
