-- Keep event ($1 topic, $2 partition, $3 offset) that cannot become a message: its bytes
-- $5, as text $4 when they are text, and why $6; the same event again inserts nothing.
INSERT INTO rejected_event (topic, partition, "offset", payload, raw, error)
VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT DO NOTHING
