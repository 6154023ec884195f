//! audit.k8s.io/v1 Policy: loading, kube-apiserver-exact evaluation, lint, apply, redaction.
