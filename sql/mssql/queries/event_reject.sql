-- Keep event (@P1 topic, @P2 partition, @P3 offset) that cannot become a message: its bytes
-- @P5, as text @P4 when they are text, and why @P6; the same event again inserts nothing.
INSERT INTO dbo.rejected_event (topic, [partition], [offset], payload, raw, error)
SELECT @P1, @P2, @P3, @P4, @P5, @P6
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.rejected_event WITH (UPDLOCK, HOLDLOCK)
                    WHERE topic = @P1 AND [partition] = @P2 AND [offset] = @P3);
