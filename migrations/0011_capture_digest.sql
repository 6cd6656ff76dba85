-- A capture's identity names its hash: 'blake3:<hex>' from now on (a third of SHA-256's cost
-- on the replay path, which hashes every byte it reads), 'sha256:<hex>' for the captures
-- replayed before. A replay still hashes with SHA-256 too when such a capture could match.
ALTER TABLE captures RENAME COLUMN sha256 TO digest;
UPDATE captures SET digest = 'sha256:' || digest;
