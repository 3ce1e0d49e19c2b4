-- The merge procedure: a stored procedure in schema @P1 named @P2, how many parameters it
-- takes (it must take exactly one, the key) and the first one's system base type.
SELECT QUOTENAME(s.name) + N'.' + QUOTENAME(p.name) AS procedure_name,
       (SELECT COUNT(*)
          FROM sys.parameters AS a
         WHERE a.object_id = p.object_id AND a.parameter_id > 0) AS parameter_count,
       prm.is_output                                AS key_is_output,
       t.name                                       AS key_type,
       prm.max_length                               AS key_max_length,
       prm.[precision]                              AS key_precision,
       prm.scale                                    AS key_scale
  FROM sys.procedures AS p
  JOIN sys.schemas AS s ON s.schema_id = p.schema_id
  LEFT JOIN sys.parameters AS prm ON prm.object_id = p.object_id AND prm.parameter_id = 1
  LEFT JOIN sys.types AS t ON t.user_type_id = prm.system_type_id
 WHERE s.name = @P1
   AND p.name = @P2;
