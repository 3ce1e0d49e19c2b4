-- Template: {procedure} is catalog-quoted, {key_type} is the type of its one parameter.
-- The key @P1 arrives as text and is cast to that type; the engine reads the first result
-- set and turns each row into a map of column name to value.
DECLARE @key {key_type} = CAST(@P1 AS {key_type});
EXEC {procedure} @key;
