-- A replay counts once (issue 13): every row a run writes carries the run's id, the run row
-- says whether it finished, and a replay's alerts wait in alerts_pending until it commits. A
-- replay whose process died (it no longer holds the run's lock, see src/store/runs.rs) is
-- rolled back: its rows are deleted, its pending alerts never reach the trail. Rows from
-- before this migration belong to no run (run_id 0).

-- running | finished | abandoned (a replay rolled back) | interrupted (the live monitor
-- ended without a clean exit: what it committed stays). Runs from before this migration that
-- never finished are interrupted: their rows cannot be told apart any more.
ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'finished';
-- The process writing the run, for people (liveness is judged by the run's lock).
ALTER TABLE runs ADD COLUMN pid INTEGER;
-- The minutes the run's egress and dns rows lie in (packet time), to find them again.
ALTER TABLE runs ADD COLUMN first_minute INTEGER;
ALTER TABLE runs ADD COLUMN last_minute INTEGER;
UPDATE runs SET state = 'interrupted' WHERE finished_at IS NULL;

ALTER TABLE egress RENAME TO egress_v2;
CREATE TABLE egress (
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    minute       INTEGER NOT NULL,
    proto        INTEGER NOT NULL,
    dst          TEXT    NOT NULL,
    dport        INTEGER NOT NULL,
    packets      INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    direction    INTEGER NOT NULL DEFAULT 0,  -- 0 unknown, 1 initiated here, 2 served (a reply)
    dst_name     TEXT,                        -- the name the sender used for dst, if seen
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (minute, principal_id, proto, dst, dport, run_id)
) WITHOUT ROWID;
INSERT INTO egress SELECT principal_id, minute, proto, dst, dport, packets, bytes, first_seen, last_seen, direction,
    dst_name, 0 FROM egress_v2;
DROP TABLE egress_v2;

ALTER TABLE dns RENAME TO dns_v2;
CREATE TABLE dns (
    minute       INTEGER NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    domain       TEXT    NOT NULL,
    queries      INTEGER NOT NULL,
    unique_names INTEGER NOT NULL,
    name_bytes   INTEGER NOT NULL,
    suspicious   INTEGER NOT NULL,
    flags        INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (minute, principal_id, domain, run_id)
) WITHOUT ROWID;
INSERT INTO dns SELECT minute, principal_id, domain, queries, unique_names, name_bytes, suspicious, flags, 0
    FROM dns_v2;
DROP TABLE dns_v2;

ALTER TABLE dns_samples RENAME TO dns_samples_v2;
CREATE TABLE dns_samples (
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    domain       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    minute       INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (principal_id, domain, name, run_id)
) WITHOUT ROWID;
INSERT INTO dns_samples SELECT principal_id, domain, name, minute, 0 FROM dns_samples_v2;
DROP TABLE dns_samples_v2;

ALTER TABLE file_reads RENAME TO file_reads_v2;
CREATE TABLE file_reads (
    ts        INTEGER NOT NULL,
    serial    INTEGER NOT NULL,
    path      TEXT    NOT NULL,
    uid       INTEGER,
    auid      INTEGER,
    fsuid     INTEGER,
    user      TEXT,
    pid       INTEGER,
    exe       TEXT,
    comm      TEXT,
    proctitle TEXT,
    size      INTEGER,
    run_id    INTEGER NOT NULL,
    PRIMARY KEY (ts, serial, path, run_id)
) WITHOUT ROWID;
INSERT INTO file_reads SELECT ts, serial, path, uid, auid, fsuid, user, pid, exe, comm, proctitle, size, 0
    FROM file_reads_v2;
DROP TABLE file_reads_v2;

CREATE TABLE alerts_pending (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    ts           INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    principal_id INTEGER REFERENCES principals (id),
    dst          TEXT,
    bytes        INTEGER NOT NULL,
    summary      TEXT    NOT NULL,
    details      TEXT    NOT NULL
);

CREATE VIEW uncounted_runs AS SELECT id FROM runs WHERE mode = 'replay' AND state <> 'finished';
