//! A structural JSON diff: which paths were added, removed or changed
//! between two versions of an object.

use serde_json::Value;

/// Deepest nesting compared path by path; deeper values compare whole.
pub const MAX_DIFF_DEPTH: usize = 64;
/// Most changes reported for one pair of versions.
pub const MAX_CHANGES: usize = 1000;

/// Paths left out because every write changes them.
const NOISE: &[&str] = &[
    ".metadata.resourceVersion",
    ".metadata.managedFields",
    ".metadata.generation",
];

/// One difference; paths look like `.spec.template.spec.containers[0].image`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Present only in the newer version.
    Added {
        /// Where.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Present only in the older version.
    Removed {
        /// Where.
        path: String,
        /// The old value.
        value: Value,
    },
    /// Present in both with different values.
    Changed {
        /// Where.
        path: String,
        /// The old value.
        from: Value,
        /// The new value.
        to: Value,
    },
}

impl Change {
    /// The path of the change.
    pub fn path(&self) -> &str {
        match self {
            Change::Added { path, .. }
            | Change::Removed { path, .. }
            | Change::Changed { path, .. } => path,
        }
    }
}

/// Differences from `old` to `new`, in path order (at most [`MAX_CHANGES`]).
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(old, new, &mut String::new(), 0, &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: &mut String, depth: usize, out: &mut Vec<Change>) {
    if out.len() >= MAX_CHANGES || a == b || NOISE.contains(&path.as_str()) {
        return;
    }
    let shown = |p: &str| {
        if p.is_empty() {
            ".".to_string()
        } else {
            p.to_string()
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if depth < MAX_DIFF_DEPTH => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                if !NOISE.contains(&path.as_str()) {
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => walk(va, vb, path, depth + 1, out),
                        (Some(va), None) => out.push(Change::Removed {
                            path: path.clone(),
                            value: va.clone(),
                        }),
                        (None, Some(vb)) => out.push(Change::Added {
                            path: path.clone(),
                            value: vb.clone(),
                        }),
                        (None, None) => {}
                    }
                }
                path.truncate(len);
                if out.len() >= MAX_CHANGES {
                    return;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if depth < MAX_DIFF_DEPTH => {
            for i in 0..x.len().max(y.len()) {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(va, vb, path, depth + 1, out),
                    (Some(va), None) => out.push(Change::Removed {
                        path: path.clone(),
                        value: va.clone(),
                    }),
                    (None, Some(vb)) => out.push(Change::Added {
                        path: path.clone(),
                        value: vb.clone(),
                    }),
                    (None, None) => {}
                }
                path.truncate(len);
                if out.len() >= MAX_CHANGES {
                    return;
                }
            }
        }
        _ => out.push(Change::Changed {
            path: shown(path),
            from: a.clone(),
            to: b.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_added_removed_changed_paths() {
        let a = json!({"metadata": {"name": "web", "resourceVersion": "1", "labels": {"a": "1"}},
                       "spec": {"replicas": 2, "containers": [{"image": "nginx:1"}]}});
        let b = json!({"metadata": {"name": "web", "resourceVersion": "2", "labels": {"b": "2"}},
                       "spec": {"replicas": 3, "containers": [{"image": "nginx:2"}, {"image": "side"}]}});
        let d = diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(Change::path).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels.a",
                ".metadata.labels.b",
                ".spec.containers[0].image",
                ".spec.containers[1]",
                ".spec.replicas"
            ]
        );
        assert!(matches!(&d[0], Change::Removed { value, .. } if value == "1"));
        assert!(matches!(&d[1], Change::Added { value, .. } if value == "2"));
        assert!(matches!(&d[4], Change::Changed { from, to, .. } if from == 2 && to == 3));
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn type_change_at_root_is_one_change() {
        let d = diff(&json!({"a": 1}), &json!([1]));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path(), ".");
    }
}
