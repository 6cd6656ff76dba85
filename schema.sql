-- exfilmon database schema, version 5: the whole current schema, for reading.
-- Not applied by anything: databases are built and upgraded by the files in migrations/, and
-- tests/migrations.rs checks that this file builds exactly the same schema. To change the
-- schema, add a migration (migrations/README.md) and bring this file up to date with it.
-- Times are integers: microseconds since the Unix epoch, UTC, taken from packet time.

-- Who sent traffic: a uid (with its last seen gid) or, when no uid is known, a host address.
CREATE TABLE principals (
    id    INTEGER PRIMARY KEY,
    uid   INTEGER,
    gid   INTEGER,
    host  TEXT,
    CHECK ((uid IS NULL) <> (host IS NULL))
);
CREATE UNIQUE INDEX principals_key ON principals (ifnull(uid, -1), ifnull(host, ''));

-- Outbound traffic aggregated per principal, destination and minute, per run: the table grows
-- with flows and minutes, not with packets. bytes are from IP length fields. A run's rows
-- count once it finished (replays) or as they are written (the live monitor); reports add up
-- the rows of a key over runs.
CREATE TABLE egress (
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    minute       INTEGER NOT NULL,  -- start of the minute
    proto        INTEGER NOT NULL,
    dst          TEXT    NOT NULL,  -- address
    dport        INTEGER NOT NULL,  -- 0 for protocols without ports
    packets      INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    direction    INTEGER NOT NULL DEFAULT 0,  -- 0 unknown, 1 initiated here, 2 served (a reply)
    dst_name     TEXT,  -- the name the sender resolved or sent as TLS server name, if seen
    run_id       INTEGER NOT NULL,  -- the run that wrote it (0: before schema 5)
    -- Minute first: rows arrive minute by minute, so inserts append, and reports select minutes.
    PRIMARY KEY (minute, principal_id, proto, dst, dport, run_id)
) WITHOUT ROWID;

-- Which program sent the egress (live only; migration 9): an egress row's packets split by the
-- program the owner lookup found behind each flow. A program is its exe and comm as the process
-- set them (raw: escaped when shown), the socket's uid and the login session's uid; or, when
-- the lookup named no process, why (unknown: socket_gone, denied, unanswered ...). Replays of
-- captures have none.
CREATE TABLE programs (
    id        INTEGER PRIMARY KEY,
    exe       TEXT,
    comm      TEXT,
    uid       INTEGER,
    login_uid INTEGER,
    unknown   TEXT,
    CHECK ((unknown IS NULL) <> (comm IS NULL))
);
CREATE UNIQUE INDEX programs_key ON programs (ifnull(exe, ''), ifnull(comm, ''), ifnull(uid, -1),
    ifnull(login_uid, -1), ifnull(unknown, ''));

CREATE TABLE egress_programs (
    minute       INTEGER NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    proto        INTEGER NOT NULL,
    dst          TEXT    NOT NULL,
    dport        INTEGER NOT NULL,
    program_id   INTEGER NOT NULL REFERENCES programs (id),
    packets      INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,  -- as in egress
    PRIMARY KEY (minute, principal_id, proto, dst, dport, program_id, run_id)
) WITHOUT ROWID;

-- One row per alert. details holds the detector's evidence as JSON.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    ts           INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    principal_id INTEGER REFERENCES principals (id),
    dst          TEXT,
    bytes        INTEGER NOT NULL DEFAULT 0,
    summary      TEXT    NOT NULL,
    details      TEXT    NOT NULL DEFAULT '{}',
    run_id       INTEGER REFERENCES runs (id),
    -- The tamper-evident trail (src/trail): position, previous row's hash, own hash (hex).
    seq          INTEGER NOT NULL UNIQUE,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);
CREATE INDEX alerts_ts ON alerts (ts);

-- The monitor's own events (started, stopped, reloaded, ruleset changed, sink failed ...),
-- append-only and chained with the alerts (and digests) into one trail: seq runs over them all.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,  -- wall clock
    kind      TEXT    NOT NULL,
    severity  TEXT    NOT NULL,
    run_id    INTEGER REFERENCES runs (id),
    summary   TEXT    NOT NULL,
    details   TEXT    NOT NULL DEFAULT '{}',
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

-- What was seen, in the trail: a digest of one minute's egress rows of one run, chained with
-- the alerts and events (seq runs over the three tables), so `exfilmon verify` notices egress
-- rows deleted, edited or inserted. A replay digests its minutes when it commits, the live
-- monitor each minute two minutes after it ended (and again if a late row changes one: the
-- last digest of a minute and run holds). digest is SHA-256 over the rows in key order, see
-- src/trail; rows, packets and bytes are their count and sums, for the person reading.
CREATE TABLE digests (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,  -- wall clock
    run_id    INTEGER NOT NULL REFERENCES runs (id),
    minute    INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    digest    TEXT    NOT NULL,  -- hex
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX digests_minute ON digests (minute, run_id);

-- Signed statements of the trail's head, also sent to the sinks: a trail cut short after one
-- left the machine no longer reaches it. signature is Ed25519 over the text in src/trail.
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,  -- wall clock
    rows       INTEGER NOT NULL,  -- trail rows covered (the head's seq)
    head       TEXT    NOT NULL,  -- hash of row `rows` (64 zeros for an empty trail)
    key_id     TEXT    NOT NULL,
    signature  TEXT    NOT NULL   -- hex
);

-- Where the trail starts after `exfilmon prune` cut a prefix off it (the newest row holds):
-- rows 1 to `rows` (alerts, events and digests all past their retention) were deleted, row
-- rows + 1 links to `head`. signature is Ed25519 over the text in src/trail (Anchor) when a
-- signing key is set. Egress of minutes before egress_before was pruned: digests of those
-- minutes that remain have no rows to check. alerts, events, digests: how many this prune cut.
CREATE TABLE trail_anchors (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,  -- wall clock
    rows          INTEGER NOT NULL,
    head          TEXT    NOT NULL,
    egress_before INTEGER NOT NULL,
    alerts        INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    digests       INTEGER NOT NULL,
    key_id        TEXT,
    signature     TEXT               -- hex
);

-- Each invocation that wrote data: what it read and what it could not use, and whether it
-- finished. A replay counts as a unit: its rows and alerts count only once it is 'finished';
-- one whose process died ('running', but nobody holds the run's lock: src/store/runs.rs) is
-- rolled back by the next exfilmon that opens the database to write: its rows are deleted,
-- its alerts never left alerts_pending, and the state becomes 'abandoned'. A live monitor
-- that ended without a clean exit keeps what it committed and becomes 'interrupted'.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    mode        TEXT    NOT NULL,  -- replay | run
    version     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,  -- wall clock
    finished_at INTEGER,
    packets     INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    malformed   INTEGER NOT NULL DEFAULT 0,
    ignored     INTEGER NOT NULL DEFAULT 0,
    alerts      INTEGER NOT NULL DEFAULT 0,
    counters    TEXT    NOT NULL DEFAULT '{}',  -- every skipped frame by reason, as JSON
    state       TEXT    NOT NULL DEFAULT 'finished',  -- running | finished | abandoned | interrupted
    pid         INTEGER,  -- the process writing it
    first_minute INTEGER, -- the minutes its egress and dns rows lie in
    last_minute INTEGER
);

-- Replays that have not committed: reports leave out their rows.
CREATE VIEW uncounted_runs AS SELECT id FROM runs WHERE mode = 'replay' AND state <> 'finished';

-- Alerts of a replay that has not committed: they join the trail (alerts) in the transaction
-- that commits the replay, so a replay that dies leaves no alert to take out of the trail.
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

-- DNS queries per principal, registered domain (public suffix list) and minute. unique_names
-- counts names this principal had not asked within the detector's last half window or more;
-- name_bytes is their length left of the registered domain: the data a tunnel carries out.
-- domain is escaped for terminals (\xNN); flags: 1 suspicious names, 2 allow-listed names,
-- 4 dns_tunnel episode open, 8 unusual query types, 16 wire oddities, 32 binary bytes in names.
CREATE TABLE dns (
    minute       INTEGER NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    domain       TEXT    NOT NULL,
    queries      INTEGER NOT NULL,
    unique_names INTEGER NOT NULL,
    name_bytes   INTEGER NOT NULL,
    suspicious   INTEGER NOT NULL,  -- unique names that looked encoded, over-long or odd-typed
    flags        INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,  -- as in egress
    PRIMARY KEY (minute, principal_id, domain, run_id)
) WITHOUT ROWID;

-- A bounded sample of suspicious names (at most 3 per dns row, 30 per pair state), escaped.
CREATE TABLE dns_samples (
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    domain       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    minute       INTEGER NOT NULL,  -- first seen
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (principal_id, domain, name, run_id)
) WITHOUT ROWID;

-- The ICMP detector's window per principal, peer and minute (migration 10), read back on start so
-- a restart keeps it: carried is echo payload bytes not among the peer's recent payloads,
-- signed the echoes with a known tunnel signature.
CREATE TABLE icmp (
    minute       INTEGER NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals (id),
    peer         TEXT    NOT NULL,
    requests     INTEGER NOT NULL,
    replies      INTEGER NOT NULL,
    carried      INTEGER NOT NULL,
    signed       INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,  -- as in egress
    PRIMARY KEY (minute, principal_id, peer, run_id)
) WITHOUT ROWID;

-- Capture files already replayed, by content hash, so a second replay does not count twice.
CREATE TABLE captures (
    digest      TEXT PRIMARY KEY,           -- 'blake3:<hex>' ('sha256:<hex>' before version 11)
    path        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    records     INTEGER NOT NULL,
    damaged     INTEGER NOT NULL,
    replayed_at INTEGER NOT NULL   -- wall clock
);

-- The live monitor's health: one row per `exfilmon run`, rewritten every second and at exit, so
-- a killed daemon leaves its last heartbeat. `received + lost` is what the ruleset logged.
CREATE TABLE health (
    run_id       INTEGER PRIMARY KEY REFERENCES runs (id),
    pid          INTEGER NOT NULL,
    nflog_group  INTEGER NOT NULL,
    rcvbuf       INTEGER NOT NULL,  -- receive buffer the kernel granted, bytes
    started_at   INTEGER NOT NULL,  -- wall clock, as every time here
    updated_at   INTEGER NOT NULL,  -- last heartbeat
    stopped_at   INTEGER,           -- set on a clean exit
    received     INTEGER NOT NULL,  -- NFLOG records received
    lost         INTEGER NOT NULL,  -- records the kernel dropped (sequence gaps)
    overruns     INTEGER NOT NULL,  -- ENOBUFS: batches dropped on a full receive buffer
    last_packet  INTEGER,           -- receipt time of the last record
    queue_depth  INTEGER NOT NULL,  -- writes waiting for the database at the heartbeat
    queue_waits  INTEGER NOT NULL,  -- times the reader waited for a full write queue
    counters     TEXT    NOT NULL DEFAULT '{}'  -- source and pipeline counters, as JSON
);

-- Reads of sensitive files ([sensitive] paths), from the kernel audit trail: who read what,
-- when, with which program. path, user, exe, comm and proctitle are escaped for terminals
-- (\xNN). fsuid is the uid egress is matched on (NFLOG's); auid the login uid (NULL: unset).
-- size: the file's size when the record was read, else the configured one. (ts, serial, path)
-- is the record's identity: a log replayed again stores it again under the new run, and
-- reports show each identity once.
CREATE TABLE file_reads (
    ts        INTEGER NOT NULL,  -- audit record time
    serial    INTEGER NOT NULL,  -- audit event serial
    path      TEXT    NOT NULL,
    uid       INTEGER,
    auid      INTEGER,
    fsuid     INTEGER,
    user      TEXT,              -- resolved by auditd on the recording host (ENRICHED logs)
    pid       INTEGER,
    exe       TEXT,
    comm      TEXT,
    proctitle TEXT,
    size      INTEGER,
    run_id    INTEGER NOT NULL,  -- as in egress
    PRIMARY KEY (ts, serial, path, run_id)
) WITHOUT ROWID;

-- Marks the file as exfilmon's: exfilmon refuses an SQLite file without this row (or, made
-- before this table existed, without exfilmon's version-1 tables) before writing to it.
CREATE TABLE exfilmon_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO exfilmon_meta (key, value) VALUES ('schema', 'exfilmon');
-- Runs from this id on digest their egress rows (set by migration 4).
INSERT INTO exfilmon_meta (key, value) VALUES ('digests_from_run', '1');

-- How far each postgres sink has shipped this database (src/ship): the database is the spool,
-- and whatever lies past a cursor goes out on the next round.
CREATE TABLE ship_cursor (
    target      TEXT PRIMARY KEY,           -- the sink's name
    seq         INTEGER NOT NULL DEFAULT 0, -- trail rows shipped (alerts, events, digests with their egress and dns rows)
    checkpoint  INTEGER NOT NULL DEFAULT 0, -- checkpoints shipped (their id)
    shipped_at  INTEGER,                    -- wall clock of the last round that reached the server
    tried_at    INTEGER,                    -- wall clock of the last round
    last_error  TEXT                        -- why the last round failed (NULL: it did not)
);

PRAGMA user_version = 11;
