//! The web side: customer portal, operator console, JSON API under `/api/v1`,
//! `/metrics` and `/healthz`. Not yet built: see issue "Customer portal".
