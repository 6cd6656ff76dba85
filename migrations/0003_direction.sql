-- Which end opened the connection of each egress row (src/decode: Direction): 0 unknown (a
-- capture that does not say), 1 initiated here, 2 served (a reply on a connection a remote peer
-- opened: a web server's answers). The ruleset logs them with NFLOG prefixes `out` and `srv`.
ALTER TABLE egress ADD COLUMN direction INTEGER NOT NULL DEFAULT 0;
