-- The watched table and its key and change columns, quoted by the catalog; $1 schema,
-- $2 table, $3 key column, $4 change column. A missing column comes back NULL. A change
-- column must be a timestamp (with or without time zone, or a domain over one).
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS table_name,
       quote_ident(k.attname)                                   AS key_column,
       format_type(k.atttypid, k.atttypmod)                     AS key_type,
       quote_ident(ch.attname)                                  AS change_column,
       format_type(ch.atttypid, ch.atttypmod)                   AS change_type,
       coalesce(nullif(ct.typbasetype, 0), ct.oid)
           IN ('timestamp'::regtype, 'timestamptz'::regtype)   AS change_is_timestamp
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute k
         ON k.attrelid = c.oid AND k.attname = $3 AND k.attnum > 0 AND NOT k.attisdropped
  LEFT JOIN pg_attribute ch
         ON ch.attrelid = c.oid AND ch.attname = $4 AND ch.attnum > 0 AND NOT ch.attisdropped
  LEFT JOIN pg_type ct ON ct.oid = ch.atttypid
 WHERE n.nspname = $1
   AND c.relname = $2
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
