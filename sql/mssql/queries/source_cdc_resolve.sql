-- `cdc` mode: the capture instance change data capture keeps for table @P1 (object id), its
-- change table (catalog-quoted), and where its key column @P2 and change column @P3 are
-- among the captured columns (NULL: not captured; computed columns are captured as NULL).
-- With two instances (a DBA replacing one after a schema change), the oldest that captures
-- both columns: its timeline reaches further back, and the newer one, created while it was
-- live, covers everything after it once it is dropped.
-- No row: the table has no capture instance, or the database has no change data capture
-- (no cdc schema: the IF keeps the statement from naming a missing table).
IF OBJECT_ID(N'cdc.change_tables') IS NOT NULL
    SELECT TOP (1)
           ct.capture_instance,
           QUOTENAME(OBJECT_SCHEMA_NAME(ct.object_id)) + N'.'
               + QUOTENAME(OBJECT_NAME(ct.object_id)) AS change_table,
           k.column_ordinal AS key_ordinal,
           k.is_computed AS key_is_computed,
           ch.column_ordinal AS change_ordinal,
           ch.is_computed AS change_is_computed
      FROM cdc.change_tables AS ct
      LEFT JOIN cdc.captured_columns AS k
             ON k.object_id = ct.object_id AND k.column_name = @P2
      LEFT JOIN cdc.captured_columns AS ch
             ON ch.object_id = ct.object_id AND ch.column_name = @P3
     WHERE ct.source_object_id = @P1
     ORDER BY CASE WHEN k.column_ordinal IS NOT NULL AND ch.column_ordinal IS NOT NULL
                   THEN 0 ELSE 1 END,
              ct.create_date, ct.object_id;
