-- What was seen joins the trail (issue 13): a digest of each minute's egress rows of a run,
-- chained with the alerts and events (one seq over the three tables), so deleting or editing
-- egress rows no longer goes unnoticed by `exfilmon verify`. Runs before this migration have
-- no digests: their rows are reported as not covered, not as tampered with.
CREATE TABLE digests (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    run_id    INTEGER NOT NULL REFERENCES runs (id),
    minute    INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    digest    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX digests_minute ON digests (minute, run_id);
INSERT INTO exfilmon_meta (key, value) SELECT 'digests_from_run', ifnull(max(id), 0) + 1 FROM runs;
