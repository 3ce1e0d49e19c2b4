-- Template: as source_changes_after_row.sql, for a watermark that has only a time (@P1):
-- rows after it, older than now - @P2 milliseconds, @P3 at most.
SELECT TOP (@P3)
       CAST({key} AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), {change}, 126) AS change_value
  FROM {table}
 WHERE {change} > CONVERT({change_type}, @P1, 126)
   AND {change} <= CAST(DATEADD(millisecond, -@P2, SYSUTCDATETIME()) AS {change_type})
 ORDER BY {change}, {key};
