-- Template: {change_table} is the capture instance's change table (cdc.[<instance>_CT]),
-- {key} and {change} the catalog-quoted key and change columns, {change_ordinal} the change
-- column's ordinal in the update mask. One page of a `cdc` mode pass, @P6 rows at most: the
-- row versions that inserts (__$operation 2) and updates moving the change column
-- (operation 4, the row after the update, with the column's bit set in __$update_mask)
-- committed after the cursor, up to commit LSN @P5 (sys.fn_cdc_get_max_lsn(), read once a
-- pass: everything up to it is in the change table), in the change table's own order.
-- The cursor is a change table row, (@P1 __$start_lsn, @P2 __$command_id, @P3 __$seqval,
-- @P4 __$operation): those four are its clustered key, so paging never skips a row, even
-- inside one large transaction. With @P2 NULL the cursor is a whole commit LSN: every row
-- after @P1.
-- Keys and change values come out as in poll mode (source_changes.sql), so a change has the
-- same notification identity in both modes. Rows with a NULL change value are skipped.
SELECT TOP (@P6)
       c.[__$start_lsn] AS start_lsn,
       c.[__$command_id] AS command_id,
       c.[__$seqval] AS seqval,
       c.[__$operation] AS operation,
       CAST(c.{key} AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), c.{change}, 126) AS change_value,
       CAST(c.{change} AS datetimeoffset(7)) AS change_at
  FROM {change_table} AS c
 WHERE c.[__$start_lsn] >= CAST(@P1 AS binary(10))
   AND c.[__$start_lsn] <= CAST(@P5 AS binary(10))
   AND (c.[__$start_lsn] > CAST(@P1 AS binary(10))
        OR c.[__$command_id] > @P2
        OR (c.[__$command_id] = @P2 AND c.[__$seqval] > CAST(@P3 AS binary(10)))
        OR (c.[__$command_id] = @P2 AND c.[__$seqval] = CAST(@P3 AS binary(10))
            AND c.[__$operation] > @P4))
   AND (c.[__$operation] = 2
        OR (c.[__$operation] = 4
            AND sys.fn_cdc_is_bit_set({change_ordinal}, c.[__$update_mask]) = 1))
   AND c.{change} IS NOT NULL
 ORDER BY c.[__$start_lsn], c.[__$command_id], c.[__$seqval], c.[__$operation];
