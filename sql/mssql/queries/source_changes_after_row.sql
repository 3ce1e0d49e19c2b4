-- Template: {table}, {key}, {change} are catalog-quoted; {key_type}, {change_type} are
-- their types. Rows after the watermark (@P1 change, @P2 key), oldest first, older than
-- now - @P3 milliseconds, @P4 at most.
-- Values travel as text: keys as CAST to nvarchar(400) (the key types allowed all
-- round-trip), change values in ISO 8601 (CONVERT style 126), which does not depend on
-- SET LANGUAGE or DATEFORMAT and casts back to the same value, so the same row always
-- yields the same text.
-- SQL Server has no row-value comparison: the first predicate is the range seek on the
-- (change, key) index, the OR refines it. The cutoff is SYSUTCDATETIME(): change columns
-- must hold UTC (or be datetimeoffset).
SELECT TOP (@P4)
       CAST({key} AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), {change}, 126) AS change_value
  FROM {table}
 WHERE {change} >= CONVERT({change_type}, @P1, 126)
   AND ({change} > CONVERT({change_type}, @P1, 126)
        OR {key} > CAST(@P2 AS {key_type}))
   AND {change} <= CAST(DATEADD(millisecond, -@P3, SYSUTCDATETIME()) AS {change_type})
 ORDER BY {change}, {key};
