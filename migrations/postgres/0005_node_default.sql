-- Which daemon wrote a connection or lifecycle row (issue 13): every write
-- transaction of a daemon sets the transaction-local setting `wsvault.node` (the
-- cluster node name, or the host name without [cluster]), and these defaults copy it
-- into the rows, whichever insert path (UNNEST, COPY, record by record) writes them.
-- Rows written by anything else keep NULL. The setting is read with missing_ok, and
-- an empty value (the setting reset after an earlier transaction) counts as unset.
ALTER TABLE connections ALTER COLUMN node SET DEFAULT NULLIF(current_setting('wsvault.node', true), '');
ALTER TABLE session_events ALTER COLUMN node SET DEFAULT NULLIF(current_setting('wsvault.node', true), '');
