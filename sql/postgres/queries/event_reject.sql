INSERT INTO rejected_event (topic, partition, "offset", payload, error)
VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT DO NOTHING
