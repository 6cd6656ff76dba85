-- The name the sender used for each egress row's address (src/detect/names_seen.rs): the name
-- it resolved (inbound DNS answers, NFLOG prefix `ans`) or the server name of its TLS
-- ClientHello; NULL when neither was seen. `report destinations` shows it with the address.
ALTER TABLE egress ADD COLUMN dst_name TEXT;
