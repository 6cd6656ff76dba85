-- Sample names of the DNS rows (as the hosts' dns_samples table): names a principal queried
-- under a registered domain, by the minute first seen, per run of the observer. `report dns`
-- shows one per row. Partitioned by day of `minute` like `dns`; the key makes shipping
-- idempotent.
CREATE TABLE dns_samples (
    observer  text   NOT NULL,
    principal text   NOT NULL,
    uid       bigint,
    gid       bigint,
    host      text,
    user_name text,
    minute    bigint NOT NULL,
    domain    text   NOT NULL,
    name      text   NOT NULL,
    run_id    bigint NOT NULL,
    PRIMARY KEY (observer, minute, principal, domain, name, run_id)
) PARTITION BY RANGE (minute);
CREATE TABLE dns_samples_default PARTITION OF dns_samples DEFAULT;
-- A report row's sample: the first name of its observer, principal and domain.
CREATE INDEX dns_samples_first ON dns_samples (observer, principal, domain, minute);
