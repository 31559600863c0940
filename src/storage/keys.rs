//! On-disk key encodings. Composite keys keep user keys in bytewise order
//! and versions of one key in revision order; the tests pin that order.

/// Appends `key` escaped so that the encoding is prefix-free and
/// order-preserving: 0x00 becomes 0x00 0xff and the key ends with 0x00 0x00.
pub(crate) fn encode_user_key(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// `esc(key) | main BE | sub BE`.
pub fn version_key(key: &[u8], main: i64, sub: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 18);
    encode_user_key(&mut out, key);
    out.extend_from_slice(&(main as u64).to_be_bytes());
    out.extend_from_slice(&(sub as u64).to_be_bytes());
    out
}

/// The smallest composite key of `key` (before all its versions).
pub(crate) fn key_start(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    encode_user_key(&mut out, key);
    out
}

/// A composite key after every version of `key`.
pub(crate) fn key_end(key: &[u8]) -> Vec<u8> {
    let mut out = key_start(key);
    out.extend_from_slice(&[0xff; 16]);
    out
}

/// Splits a composite key into `(user key, main, sub)`.
pub fn decode_version_key(raw: &[u8]) -> Option<(Vec<u8>, i64, i64)> {
    if raw.len() < 18 {
        return None;
    }
    let (esc, revs) = raw.split_at(raw.len() - 16);
    let main = u64::from_be_bytes(revs[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(revs[8..].try_into().ok()?) as i64;
    let mut key = Vec::with_capacity(esc.len());
    let mut i = 0;
    while i < esc.len() {
        match (esc[i], esc.get(i + 1)) {
            (0, Some(0)) if i + 2 == esc.len() => return Some((key, main, sub)),
            (0, Some(0xff)) => {
                key.push(0);
                i += 2;
            }
            (0, _) => return None,
            (b, _) => {
                key.push(b);
                i += 1;
            }
        }
    }
    None
}

/// `main BE | sub BE`: the revision keys of the change log.
pub fn revision_key(main: i64, sub: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    out
}

pub fn decode_revision_key(raw: &[u8]) -> Option<(i64, i64)> {
    if raw.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(raw[..8].try_into().ok()?) as i64,
        u64::from_be_bytes(raw[8..].try_into().ok()?) as i64,
    ))
}

/// A lease id as 8 big-endian bytes: the `leases` key and the prefix of
/// its keys in `lease_keys`.
pub(crate) fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_keep_bytewise_order_across_versions() {
        let keys: [&[u8]; 7] = [b"", b"\0", b"\0\0", b"\0\x01", b"a", b"a\0", b"ab"];
        let mut encoded = Vec::new();
        for k in keys {
            for (main, sub) in [(1, 0), (1, 1), (2, 0), (300, 5)] {
                encoded.push(version_key(k, main, sub));
            }
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted, "encoding must sort by (key, main, sub)");
        for k in keys {
            assert!(key_start(k) < version_key(k, 0, 0));
            assert!(key_end(k) > version_key(k, i64::MAX, i64::MAX));
            assert_eq!(
                decode_version_key(&version_key(k, 7, 3)),
                Some((k.to_vec(), 7, 3))
            );
        }
        assert!(key_end(b"a") < key_start(b"a\0"));
    }

    #[test]
    fn revision_keys_sort_by_main_then_sub() {
        assert!(revision_key(1, 9) < revision_key(2, 0));
        assert!(revision_key(2, 0) < revision_key(2, 1));
        assert_eq!(decode_revision_key(&revision_key(5, 2)), Some((5, 2)));
    }
}
