-- The writer's fencing check reads the lease rows it writes under `FOR KEY SHARE`
-- (cluster/fence.rs). That lock must hold off a takeover until the batch commits,
-- yet let the holder's own renewals through: a renewal waiting behind its own
-- node's slow batch (a lock, a disk stall) made that node miss its deadline and
-- give its sources up. PostgreSQL takes the strong `FOR UPDATE` row lock for an
-- UPDATE that changes a column of a unique index, and `FOR NO KEY UPDATE`
-- otherwise; only the first conflicts with `FOR KEY SHARE`. Every change of holder
-- changes `term`, a renewal changes only `expires_at`, so with `term` in a unique
-- index a takeover waits for the batch and a renewal does not.
CREATE UNIQUE INDEX leases_source_term ON leases (source, term);
