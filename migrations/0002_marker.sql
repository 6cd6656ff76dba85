-- Marks the file as exfilmon's: `exfilmon` refuses to touch an SQLite file without this table
-- (or, for databases from before this migration, without exfilmon's version-1 tables), so a
-- mistyped --db never turns another program's database into a half exfilmon one.
CREATE TABLE exfilmon_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO exfilmon_meta (key, value) VALUES ('schema', 'exfilmon');
