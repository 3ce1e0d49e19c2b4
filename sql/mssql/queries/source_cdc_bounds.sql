-- `cdc` mode: where change data capture stands, read at the start of each pass.
--   max_lsn               the highest commit LSN the capture job has processed
--                         (sys.fn_cdc_get_max_lsn: the high end of every capture instance's
--                         timeline); NULL before its first scan
--   max_lsn_committed_at  that LSN's commit time, as a UTC instant
--   min_lsn               the low end of capture instance @P1's timeline
--                         (cdc.change_tables.start_lsn, which sys.fn_cdc_get_min_lsn
--                         returns; the cleanup job raises it); NULL: not established yet
--   replica_now           this replica's clock
-- Commit times are cdc.lsn_time_mapping.tran_end_time (sys.fn_cdc_map_lsn_to_time), a
-- datetime in the primary's local time: converted with this replica's current UTC offset,
-- as Debezium's SQL Server connector does (TODATETIMEOFFSET(..., DATEPART(TZOFFSET,
-- SYSDATETIMEOFFSET()))). min_lsn is read from the table rather than through
-- sys.fn_cdc_get_min_lsn, which answers 0x00… to a login without SELECT on every captured
-- column; SELECT on the cdc schema is what this mode needs.
SELECT m.max_lsn,
       TODATETIMEOFFSET(sys.fn_cdc_map_lsn_to_time(m.max_lsn),
                        DATEPART(TZOFFSET, SYSDATETIMEOFFSET())) AS max_lsn_committed_at,
       (SELECT ct.start_lsn
          FROM cdc.change_tables AS ct
         WHERE ct.capture_instance = @P1) AS min_lsn,
       SYSDATETIMEOFFSET() AS replica_now
  FROM (SELECT sys.fn_cdc_get_max_lsn() AS max_lsn) AS m;
