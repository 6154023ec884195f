//! The audit.k8s.io event model: lossless parsing, kube-apiserver-exact encoding, readers.
