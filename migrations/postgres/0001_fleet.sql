-- The fleet store (issue 12): what every host ships, in one PostgreSQL database. Applied by
-- src/ship/schema.rs, in order, in one transaction each; `exfilmon_schema` counts them.
-- Rows are the hosts' own rows with `observer` (the host's name) in front and the principal
-- spelled out: `principal` is the key ('uid:1000' or 'host:192.0.2.7'), `user_name` the uid's
-- name as the observer resolved it when it shipped the row. Times are microseconds since the
-- Unix epoch, UTC, as on the hosts. Every table is partitioned by day of its time column
-- (partitions named TABLE_dN, N the day since the epoch, made by the shippers as days arrive),
-- so retention drops whole partitions; rows of days without one (a capture's clock years off)
-- land in TABLE_default. Keys make shipping idempotent: a row shipped twice is one row.

-- Egress per principal, destination and minute, per run of the observer.
CREATE TABLE egress (
    observer   text   NOT NULL,
    principal  text   NOT NULL,
    uid        bigint,
    gid        bigint,
    host       text,
    user_name  text,
    minute     bigint NOT NULL,
    proto      bigint NOT NULL,
    dst        text   NOT NULL,
    dport      bigint NOT NULL,
    packets    bigint NOT NULL,
    bytes      bigint NOT NULL,
    first_seen bigint NOT NULL,
    last_seen  bigint NOT NULL,
    direction  bigint NOT NULL,
    dst_name   text,
    run_id     bigint NOT NULL,
    PRIMARY KEY (observer, minute, principal, proto, dst, dport, run_id)
) PARTITION BY RANGE (minute);

-- DNS queries per principal, registered domain and minute (as the hosts' dns table).
CREATE TABLE dns (
    observer     text   NOT NULL,
    principal    text   NOT NULL,
    uid          bigint,
    gid          bigint,
    host         text,
    user_name    text,
    minute       bigint NOT NULL,
    domain       text   NOT NULL,
    queries      bigint NOT NULL,
    unique_names bigint NOT NULL,
    name_bytes   bigint NOT NULL,
    suspicious   bigint NOT NULL,
    flags        bigint NOT NULL,
    run_id       bigint NOT NULL,
    PRIMARY KEY (observer, minute, principal, domain, run_id)
) PARTITION BY RANGE (minute);

-- Alerts; seq is the observer's trail position (the key), id its local row id.
CREATE TABLE alerts (
    observer  text   NOT NULL,
    principal text,
    uid       bigint,
    gid       bigint,
    host      text,
    user_name text,
    seq       bigint NOT NULL,
    id        bigint NOT NULL,
    ts        bigint NOT NULL,
    kind      text   NOT NULL,
    severity  text   NOT NULL,
    dst       text,
    bytes     bigint NOT NULL,
    summary   text   NOT NULL,
    details   text   NOT NULL,
    run_id    bigint,
    hash      text   NOT NULL,
    PRIMARY KEY (observer, seq, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX alerts_ts ON alerts (ts);

-- The monitors' own events.
CREATE TABLE events (
    observer text   NOT NULL,
    seq      bigint NOT NULL,
    ts       bigint NOT NULL,
    kind     text   NOT NULL,
    severity text   NOT NULL,
    run_id   bigint,
    summary  text   NOT NULL,
    details  text   NOT NULL,
    hash     text   NOT NULL,
    PRIMARY KEY (observer, seq, ts)
) PARTITION BY RANGE (ts);

-- Digests of each minute's egress rows per run, as chained into the observer's trail.
CREATE TABLE digests (
    observer text   NOT NULL,
    seq      bigint NOT NULL,
    ts       bigint NOT NULL,
    run_id   bigint NOT NULL,
    minute   bigint NOT NULL,
    rows     bigint NOT NULL,
    packets  bigint NOT NULL,
    bytes    bigint NOT NULL,
    digest   text   NOT NULL,
    hash     text   NOT NULL,
    PRIMARY KEY (observer, seq, ts)
) PARTITION BY RANGE (ts);

-- Signed statements of the observers' trail heads.
CREATE TABLE checkpoints (
    observer  text   NOT NULL,
    id        bigint NOT NULL,
    ts        bigint NOT NULL,
    rows      bigint NOT NULL,
    head      text   NOT NULL,
    key_id    text   NOT NULL,
    signature text   NOT NULL,
    PRIMARY KEY (observer, id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE egress_default PARTITION OF egress DEFAULT;
CREATE TABLE dns_default PARTITION OF dns DEFAULT;
CREATE TABLE alerts_default PARTITION OF alerts DEFAULT;
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE digests_default PARTITION OF digests DEFAULT;
CREATE TABLE checkpoints_default PARTITION OF checkpoints DEFAULT;

-- Each observer's last round: how far its trail has arrived, from which version.
CREATE TABLE observers (
    observer   text   PRIMARY KEY,
    seq        bigint NOT NULL,
    shipped_at bigint NOT NULL,
    version    text   NOT NULL
);
