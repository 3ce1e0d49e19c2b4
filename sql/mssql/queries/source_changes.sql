-- Template: {table}, {key}, {change} are catalog-quoted; {key_type}, {change_type} are
-- their types. One page of a `poll` mode pass: rows whose change value is at or above the
-- hold-back line @P1 (UTC), after the cursor (@P2 change, @P3 key; NULL on the first page),
-- in (change, key) order, @P6 at most.
--   fresh  above the frontier (@P4 change, @P5 key; NULL: nothing read yet): new to the
--          detector. Rows at or below it are read again by every pass (SQL Server shows a
--          replica no in-flight transactions to rule them out); the detector emits each once.
--   change_at  the change value as an instant (datetime2 and datetime columns hold UTC).
-- Values travel as text: keys as CAST to nvarchar(400) (the key types allowed all
-- round-trip), change values in ISO 8601 (CONVERT style 126), which does not depend on
-- SET LANGUAGE or DATEFORMAT and casts back to the same value, so the same row always
-- yields the same text. UTC lines are cast to the column's type: datetime2 columns must
-- hold UTC; datetimeoffset columns compare as instants.
-- SQL Server has no row-value comparison: the range seek on the (change, key) index starts
-- at the cursor, else at the line (a cursor is a row of this pass, never below the line),
-- and the OR refines it.
SELECT TOP (@P6)
       CAST({key} AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), {change}, 126) AS change_value,
       CAST(CASE WHEN @P4 IS NULL
                   OR {change} > CONVERT({change_type}, @P4, 126)
                   OR ({change} = CONVERT({change_type}, @P4, 126)
                       AND {key} > CAST(@P5 AS {key_type}))
                 THEN 1 ELSE 0 END AS bit) AS fresh,
       CAST({change} AS datetimeoffset(7)) AS change_at
  FROM {table}
 WHERE {change} >= COALESCE(CONVERT({change_type}, @P2, 126), CAST(@P1 AS {change_type}))
   AND (@P2 IS NULL
        OR {change} > CONVERT({change_type}, @P2, 126)
        OR {key} > CAST(@P3 AS {key_type}))
 ORDER BY {change}, {key};
