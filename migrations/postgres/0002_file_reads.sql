-- Sensitive-file reads (from the observers' audit logs), as the hosts' file_reads table: one
-- row per read per run, `user` as auditd resolved it, `user_name` the reader's (fsuid, else
-- uid) name as the observer resolved it when it shipped the row. Partitioned by day of `ts`
-- like the other tables; the key makes shipping idempotent.
CREATE TABLE file_reads (
    observer  text   NOT NULL,
    user_name text,
    ts        bigint NOT NULL,
    serial    bigint NOT NULL,
    path      text   NOT NULL,
    uid       bigint,
    auid      bigint,
    fsuid     bigint,
    "user"    text,
    pid       bigint,
    exe       text,
    comm      text,
    proctitle text,
    size      bigint,
    run_id    bigint NOT NULL,
    PRIMARY KEY (observer, ts, serial, path, run_id)
) PARTITION BY RANGE (ts);
CREATE TABLE file_reads_default PARTITION OF file_reads DEFAULT;
