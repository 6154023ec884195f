//! Deterministic generator of realistic kube-apiserver audit traffic.
