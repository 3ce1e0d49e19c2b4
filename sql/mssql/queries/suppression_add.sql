-- Address @P3 of tenant @P1 on channel @P2 must not be contacted again by any of its
-- schedules: @P4 says why, @P5
-- what said so. An address already on the list keeps its entry (UPDLOCK, HOLDLOCK: two
-- adds of one address cannot both insert).
INSERT INTO dbo.suppression (tenant, channel, address, reason, source)
SELECT @P1, @P2, @P3, @P4, @P5
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.suppression WITH (UPDLOCK, HOLDLOCK)
                    WHERE tenant = @P1 AND channel = @P2 AND address_lower = LOWER(@P3)
                      AND schedule_id IS NULL);
