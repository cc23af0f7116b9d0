--
-- pg_dump carries durable's rows: every table is an extension configuration
-- table, dumped whole (no filter).
--
SELECT c.relname,
       c.oid = ANY (e.extconfig) AS dumped,
       coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') AS filter
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'durable'
   AND c.relnamespace = 'durable'::regnamespace AND c.relkind = 'r'
 ORDER BY 1;
