SELECT schedule_id, tenant, name, channel, source_schema, source_table, key_column,
       change_column, merge_schema, merge_function, template_name, active, error
  FROM schedule
 WHERE tenant = $1
   AND name = $2
