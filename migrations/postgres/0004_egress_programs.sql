-- Which programs sent the egress (as the hosts' egress_programs with their programs): an
-- egress row's packets and bytes split by the program the live owner lookup found, so
-- `report users|destinations` on the fleet store name the programs as on the host. The
-- principal is spelled out as in `egress`. `program` is the program's identity as the observer
-- keys it (a JSON array of exe, comm, uid, login uid and the reason it is unknown), which
-- stands in the key for those columns, any of which may be null; `program_user` and
-- `login_user` are the names the observer gave the program's uid and login uid. Partitioned
-- by day of `minute` like `egress`; the key makes shipping idempotent.
CREATE TABLE egress_programs (
    observer     text   NOT NULL,
    principal    text   NOT NULL,
    uid          bigint,
    gid          bigint,
    host         text,
    user_name    text,
    minute       bigint NOT NULL,
    proto        bigint NOT NULL,
    dst          text   NOT NULL,
    dport        bigint NOT NULL,
    program      text   NOT NULL,
    exe          text,
    comm         text,
    program_uid  bigint,
    login_uid    bigint,
    unknown      text,
    program_user text,
    login_user   text,
    packets      bigint NOT NULL,
    bytes        bigint NOT NULL,
    run_id       bigint NOT NULL,
    PRIMARY KEY (observer, minute, principal, proto, dst, dport, program, run_id)
) PARTITION BY RANGE (minute);
CREATE TABLE egress_programs_default PARTITION OF egress_programs DEFAULT;
