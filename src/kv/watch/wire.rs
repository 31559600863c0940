//! Watch responses as they go on the wire. Every event of a revision is
//! encoded once (with its `prev_kv` and without) and the bytes are shared by
//! every watcher that gets it, so fanning one revision out to a thousand
//! watchers copies each event once into each response's buffer, not into a
//! thousand owned messages first. A [`WatchOut`] is a `WatchResponse` whose
//! events are such shared encodings; its encoding is byte for byte the
//! `WatchResponse` prost would produce.

use std::sync::{Arc, OnceLock};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use crate::pb::etcdserverpb::WatchResponse;
use crate::pb::mvccpb::Event;

/// The field number of `WatchResponse.events`.
const EVENTS_FIELD: u32 = 11;

/// A watch event and its encodings, made on first use.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: Event,
    plain: OnceLock<Arc<[u8]>>,
    with_prev: OnceLock<Arc<[u8]>>,
}

impl SharedEvent {
    pub fn new(event: Event) -> SharedEvent {
        SharedEvent {
            event,
            plain: OnceLock::new(),
            with_prev: OnceLock::new(),
        }
    }

    /// The encoded `Event`, with its `prev_kv` if `prev` (and it has one).
    pub fn encoded(&self, prev: bool) -> Arc<[u8]> {
        let prev = prev && self.event.prev_kv.is_some();
        let cell = if prev { &self.with_prev } else { &self.plain };
        cell.get_or_init(|| {
            if prev {
                self.event.encode_to_vec().into()
            } else {
                Event {
                    prev_kv: None,
                    ..self.event.clone()
                }
                .encode_to_vec()
                .into()
            }
        })
        .clone()
    }
}

impl PartialEq for SharedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

impl Clone for SharedEvent {
    fn clone(&self) -> Self {
        SharedEvent::new(self.event.clone())
    }
}

/// One Watch response: its fields in `head` (whose `events` stay empty) and
/// its events as shared encodings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchOut {
    pub head: WatchResponse,
    pub events: Vec<Arc<[u8]>>,
}

fn event_field_len(event: &[u8]) -> usize {
    key_len(EVENTS_FIELD) + encoded_len_varint(event.len() as u64) + event.len()
}

impl WatchOut {
    /// A response without events.
    pub fn of(head: WatchResponse) -> WatchOut {
        WatchOut {
            head,
            events: Vec::new(),
        }
    }

    pub fn encoded_len(&self) -> usize {
        self.head.encoded_len()
            + self
                .events
                .iter()
                .map(|e| event_field_len(e))
                .sum::<usize>()
    }

    /// Writes the response as `WatchResponse` (fields in field order, the
    /// events, field 11, last).
    pub(crate) fn encode(&self, buf: &mut impl prost::bytes::BufMut) {
        self.head.encode_raw(buf);
        for e in &self.events {
            encode_key(EVENTS_FIELD, WireType::LengthDelimited, buf);
            encode_varint(e.len() as u64, buf);
            buf.put_slice(e);
        }
    }

    /// The events decoded again (tests).
    #[cfg(test)]
    pub(crate) fn decode_events(&self) -> Vec<Event> {
        (self.events.iter())
            .map(|e| Event::decode(&e[..]).expect("encoded by SharedEvent"))
            .collect()
    }
}

/// etcd's `sendFragments` (`v3rpc/watch.go`): a response of at least
/// `max_bytes` with two or more events, for a watcher that asked for
/// fragments, goes out in pieces of at least one event each, every piece
/// but the last marked `fragment`. Anything else goes out whole, unmarked.
pub(crate) fn fragments(mut out: WatchOut, max_bytes: usize) -> Vec<WatchOut> {
    out.head.fragment = false;
    if out.events.len() < 2 || out.encoded_len() < max_bytes {
        return vec![out];
    }
    let events = std::mem::take(&mut out.events);
    let base = WatchOut {
        head: WatchResponse {
            fragment: true,
            ..out.head
        },
        events: Vec::new(),
    };
    let base_len = base.encoded_len();
    let mut pieces = Vec::new();
    let mut piece = base.clone();
    let mut len = base_len;
    for e in events {
        let add = event_field_len(&e);
        if !piece.events.is_empty() && len + add >= max_bytes {
            pieces.push(std::mem::replace(&mut piece, base.clone()));
            len = base_len;
        }
        len += add;
        piece.events.push(e);
    }
    piece.head.fragment = false;
    pieces.push(piece);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn put(key: &str, size: usize) -> Arc<[u8]> {
        SharedEvent::new(Event {
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'x'; size],
                ..Default::default()
            }),
            prev_kv: Some(KeyValue::default()),
            ..Default::default()
        })
        .encoded(false)
    }

    fn out(events: Vec<Arc<[u8]>>) -> WatchOut {
        WatchOut {
            head: WatchResponse {
                watch_id: 3,
                fragment: true,
                ..Default::default()
            },
            events,
        }
    }

    #[test]
    fn encodes_exactly_as_prost() {
        let o = out(vec![put("a", 3), put("b", 300)]);
        let mut buf = Vec::new();
        o.encode(&mut buf);
        let mut whole = o.head.clone();
        whole.events = o.decode_events();
        assert_eq!(buf, whole.encode_to_vec());
        assert_eq!(o.encoded_len(), buf.len());
        assert!(whole.events.iter().all(|e| e.prev_kv.is_none()));
    }

    #[test]
    fn fragments_split_only_big_multi_event_responses() {
        let one = fragments(out(vec![put("a", 100)]), 10);
        assert_eq!((one.len(), one[0].head.fragment), (1, false));
        let small = fragments(out(vec![put("a", 1), put("b", 1)]), 1000);
        assert_eq!(small.len(), 1);
        let pieces = fragments(out(vec![put("a", 600), put("b", 600), put("c", 10)]), 1000);
        let shape: Vec<(usize, bool)> = (pieces.iter())
            .map(|p| (p.events.len(), p.head.fragment))
            .collect();
        assert_eq!(shape, vec![(1, true), (2, false)]);
        assert!(pieces.iter().all(|p| p.head.watch_id == 3));
    }
}
