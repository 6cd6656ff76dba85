-- Which program sent the egress (issue 11): the live monitor looks up the process behind each
-- flow; egress_programs splits an egress row's bytes by program, so reports name the main
-- programs per user and destination. Replays of captures have no programs (no rows here).
-- A program is its exe and comm as the process set them (raw, escaped when shown), the
-- socket's uid and the login session's uid; or, when the lookup named no process, why
-- (unknown: a stable reason such as socket_gone or denied).
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
    run_id       INTEGER NOT NULL,
    PRIMARY KEY (minute, principal_id, proto, dst, dport, program_id, run_id)
) WITHOUT ROWID;
