//! Enforcement: makes the network obey the port-25 policy through an nftables table on
//! the router and a RADIUS server for the BRAS (Filter-Id, accounting, CoA).
