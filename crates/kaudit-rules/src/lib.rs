//! Falco- and Sigma-compatible detection rules over audit events.
