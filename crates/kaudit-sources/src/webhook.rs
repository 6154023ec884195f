//! The kube-apiserver webhook source, without its transport: the body of one
//! `POST` (an `EventList`, one `Event`, or a JSON array of either, as the
//! webhook backend and Falco's `k8s_audit` endpoint send) decoded item by
//! item, so one bad item never costs its neighbours.
//!
//! The HTTP listener, its limits and authentication live in `kaudit-server`;
//! they hand the inflated body to [`crate::Ingestor::ingest_batch`], which
//! decodes it here.

use crate::pipeline::{BadItem, IngestError};
use kaudit_event::{parse_batch_limited, Event, EventError};

/// One webhook body, decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The items that are audit events, with their index in the body.
    pub events: Vec<(usize, Event)>,
    /// The items that are not, located by JSON path, with their bytes.
    pub bad: Vec<BadItem>,
}

/// Decodes a webhook body. Only a body that is not JSON, not a list of
/// events at all, or holds more than `max_items` items is an error (the last
/// found while reading, so the rest is never decoded); bad items are returned
/// in [`Decoded::bad`].
pub fn decode(body: &[u8], max_items: usize) -> Result<Decoded, IngestError> {
    let items = parse_batch_limited(body, max_items).map_err(|e| match e {
        EventError::TooManyItems { limit } => IngestError::TooManyItems { limit },
        e => IngestError::BadBody(e.to_string()),
    })?;
    let mut out = Decoded {
        events: Vec::with_capacity(items.len()),
        bad: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(ev) => out.events.push((index, ev)),
            Err(e) => out.bad.push(BadItem {
                index,
                path: Some(e.path.clone()),
                reason: e.error.to_string(),
                raw: e.raw,
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_items_are_located_and_kept_beside_good_ones() {
        let good = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.000001Z"}"#;
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{good},{{"nope":1}},{good}]}}"#
        );
        let d = decode(body.as_bytes(), 10).unwrap();
        assert_eq!(d.events.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(d.bad.len(), 1);
        assert_eq!(d.bad[0].index, 1);
        assert_eq!(d.bad[0].raw, br#"{"nope":1}"#);
        assert!(d.bad[0].path.as_deref().unwrap_or("").contains('1'));
        assert!(matches!(
            decode(b"not json", 10),
            Err(IngestError::BadBody(_))
        ));
        assert!(matches!(
            decode(body.as_bytes(), 2),
            Err(IngestError::TooManyItems { limit: 2 })
        ));
    }
}
