-- The ICMP detector's window per principal, peer and minute (issue 11), so a restarted monitor
-- rebuilds it: part of an echo tunnel before a restart and part after make one alert. carried
-- is echo payload bytes not among the peer's recent payloads (see src/detect/icmp.rs); signed
-- counts echoes with a known tunnel signature.
CREATE TABLE icmp (
    minute       INTEGER NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    peer         TEXT    NOT NULL,
    requests     INTEGER NOT NULL,
    replies      INTEGER NOT NULL,
    carried      INTEGER NOT NULL,
    signed       INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (minute, principal_id, peer, run_id)
) WITHOUT ROWID;
