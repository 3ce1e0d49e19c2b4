-- `cdc` mode: the first commit LSN whose commit time is at or after @P1 (UTC) less a second,
-- where a schedule with no LSN position yet (new, or coming from `poll` mode) starts
-- reading: its changes from the hold-back line on committed no earlier. NULL: the capture
-- job has processed no commit that late yet. @P1 goes to the primary's local time with this
-- replica's current UTC offset (see source_cdc_bounds.sql). The second covers commit times
-- rounded to datetime's 1/300 s and a replica clock slightly ahead of the primary's: the
-- changes of that second are read too (coming from poll mode, again; the queue's identity
-- key keeps each notification single).
SELECT sys.fn_cdc_map_time_to_lsn(N'smallest greater than or equal',
                                  DATEADD(second, -1,
                                          DATEADD(minute, DATEPART(TZOFFSET, SYSDATETIMEOFFSET()),
                                                  @P1))) AS lsn;
