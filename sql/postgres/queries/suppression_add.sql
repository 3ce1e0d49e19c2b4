-- Address $3 of tenant $1 on channel $2 must not be contacted again by any of its schedules:
-- $4 says why, $5 what said so. An address already on the list keeps its entry.
INSERT INTO suppression (tenant, channel, address, reason, source)
VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (tenant, channel, lower(address), coalesce(schedule_id, 0)) DO NOTHING
