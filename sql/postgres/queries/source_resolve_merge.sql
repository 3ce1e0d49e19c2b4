-- The merge function: a function in schema $1 named $2 taking exactly one argument.
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) AS function_name,
       format_type(p.proargtypes[0], NULL)                      AS key_type
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = $1
   AND p.proname = $2
   AND p.prokind = 'f'
   AND p.pronargs = 1
