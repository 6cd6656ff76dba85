-- Retention (issue 13): `exfilmon prune` deletes what is past its retention. The trail can
-- only lose a prefix (rows 1 to N, all past their retention), so that the rest still proves
-- itself: each prune records where the trail now starts, signed when a key is set.
CREATE TABLE trail_anchors (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    head          TEXT    NOT NULL,
    egress_before INTEGER NOT NULL,
    alerts        INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    digests       INTEGER NOT NULL,
    key_id        TEXT,
    signature     TEXT
);
