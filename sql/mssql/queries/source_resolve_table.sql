-- The watched table or view and its key and change columns, named by the catalog; @P1
-- schema, @P2 table, @P3 key column, @P4 change column. A missing column comes back NULL.
-- Types are the columns' system base types (CAST cannot name an alias type), as the
-- catalog numbers them; the engine spells them out and checks they are usable.
-- QUOTENAME returns NULL for a name over 128 characters, which the engine reports. The
-- object id and the unquoted column names find the table's capture instance in `cdc` mode.
-- A string key's collation is the one its comparisons use (NULL for other types).
SELECT QUOTENAME(s.name) + N'.' + QUOTENAME(o.name) AS table_name,
       o.object_id                                  AS table_id,
       k.name                                       AS key_name,
       QUOTENAME(k.name)                            AS key_column,
       kt.name                                      AS key_type,
       k.max_length                                 AS key_max_length,
       k.[precision]                                AS key_precision,
       k.scale                                      AS key_scale,
       k.collation_name                             AS key_collation,
       ch.name                                      AS change_name,
       QUOTENAME(ch.name)                           AS change_column,
       cht.name                                     AS change_type,
       ch.max_length                                AS change_max_length,
       ch.[precision]                               AS change_precision,
       ch.scale                                     AS change_scale
  FROM sys.objects AS o
  JOIN sys.schemas AS s ON s.schema_id = o.schema_id
  LEFT JOIN sys.columns AS k ON k.object_id = o.object_id AND k.name = @P3
  LEFT JOIN sys.types AS kt ON kt.user_type_id = k.system_type_id
  LEFT JOIN sys.columns AS ch ON ch.object_id = o.object_id AND ch.name = @P4
  LEFT JOIN sys.types AS cht ON cht.user_type_id = ch.system_type_id
 WHERE s.name = @P1
   AND o.name = @P2
   AND o.type IN ('U', 'V'); -- sys.tables and sys.views
