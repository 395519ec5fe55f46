//! The abuse loop: ARF complaints (RFC 5965), DNSBL monitoring, the NetFlow/IPFIX
//! collector and submission anomalies in; attribution to the subscriber who held the
//! address, cases, re-instatement and customer notices out.
//! Not yet built: see issue "The abuse loop".
