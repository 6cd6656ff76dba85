-- The fleet store (issue 12): how far each postgres sink has shipped this database. The
-- database is the spool: rows stay here whatever the central server does, and `exfilmon
-- ship` (or the daemon, or a replay at its end) sends what lies past the cursor.
CREATE TABLE ship_cursor (
    target      TEXT PRIMARY KEY,           -- the sink's name
    seq         INTEGER NOT NULL DEFAULT 0, -- trail rows shipped (alerts, events, digests with their egress and dns rows)
    checkpoint  INTEGER NOT NULL DEFAULT 0, -- checkpoints shipped (their id)
    shipped_at  INTEGER,                    -- wall clock of the last round that reached the server
    tried_at    INTEGER,                    -- wall clock of the last round
    last_error  TEXT                        -- why the last round failed (NULL: it did not)
);
