//! The `Snapshot.Stream` format, both ends: a header (table, epoch, leader
//! index, revisions, size), the file in chunks each with its CRC-32, and a
//! trailer with the whole file's size and CRC-32 and the header's CRC-32.
//! The sender streams a copy it owns (removed when done, or when the
//! follower stalls); the receiver checks everything before the file is used
//! and never writes more than the header announced.

use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::Status;

use super::RemoveOnDrop;
use crate::error::{Error, Result};
use crate::pb::replication::{SnapshotChunk, SnapshotHeader, SnapshotTrailer};

/// A follower that takes no chunk for this long has its stream ended, and
/// the copy removed.
pub(super) const STALLED: Duration = Duration::from_secs(60);

/// Streams the snapshot copy `copy` described by `header` into `tx` in
/// chunks of `chunk` bytes. A follower that hung up or stalled ends it
/// quietly; the copy is removed when this returns.
pub(super) async fn stream_file(
    copy: RemoveOnDrop,
    header: SnapshotHeader,
    chunk: usize,
    tx: &mpsc::Sender<std::result::Result<SnapshotChunk, Status>>,
) -> Result<()> {
    let size = header.size;
    let header_crc32 = crc32fast::hash(&header.encode_to_vec());
    let first = SnapshotChunk {
        header: Some(header),
        ..Default::default()
    };
    if tx.send_timeout(Ok(first), STALLED).await.is_err() {
        return Ok(()); // gone or stalled: the copy is removed on return
    }
    let mut file = tokio::fs::File::open(&copy.0).await?;
    let mut whole = crc32fast::Hasher::new();
    let mut sent = 0u64;
    loop {
        let mut data = Vec::with_capacity(chunk);
        (&mut file)
            .take(chunk as u64)
            .read_to_end(&mut data)
            .await?;
        if data.is_empty() {
            break;
        }
        whole.update(&data);
        sent += data.len() as u64;
        let msg = SnapshotChunk {
            crc32: crc32fast::hash(&data),
            data,
            ..Default::default()
        };
        if tx.send_timeout(Ok(msg), STALLED).await.is_err() {
            return Ok(());
        }
    }
    if sent != size {
        return Err(Error::Internal(format!(
            "snapshot copy changed size while streaming: {sent} of {size} bytes"
        )));
    }
    let last = SnapshotChunk {
        trailer: Some(SnapshotTrailer {
            size,
            crc32: whole.finalize(),
            header_crc32,
        }),
        ..Default::default()
    };
    let _ = tx.send_timeout(Ok(last), STALLED).await;
    Ok(())
}

/// Writes a `Snapshot.Stream` to `path` and returns its header, after
/// checking the order of the messages, every chunk's CRC-32, and the
/// trailer's size and whole-file CRC-32; syncs the file. Any mismatch, or
/// a stream that ends early, is an error. `bytes_per_second` (0: no limit)
/// paces the reception.
pub async fn receive_snapshot<S>(
    mut stream: S,
    path: &Path,
    bytes_per_second: u64,
) -> Result<SnapshotHeader>
where
    S: futures::Stream<Item = std::result::Result<SnapshotChunk, Status>> + Unpin,
{
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let next = |m: Option<std::result::Result<SnapshotChunk, Status>>| match m {
        Some(Ok(c)) => Ok(c),
        Some(Err(s)) => Err(Error::Upstream(format!("Snapshot.Stream: {s}"))),
        None => Err(Error::Corrupt(
            "snapshot stream ended before its trailer".into(),
        )),
    };
    let header = next(stream.next().await)?
        .header
        .ok_or_else(|| Error::Corrupt("snapshot stream does not start with a header".into()))?;
    let mut out = tokio::fs::File::create(path).await?;
    let mut whole = crc32fast::Hasher::new();
    let (mut bytes, start) = (0u64, Instant::now());
    let trailer = loop {
        let chunk = next(stream.next().await)?;
        if let Some(trailer) = chunk.trailer {
            break trailer;
        }
        if chunk.header.is_some() || crc32fast::hash(&chunk.data) != chunk.crc32 {
            return Err(Error::Corrupt(format!(
                "snapshot chunk at byte {bytes} is corrupt (checksum mismatch)"
            )));
        }
        bytes += chunk.data.len() as u64;
        // A leader may not send more than it announced: a disk is not
        // filled on its word.
        if bytes > header.size {
            return Err(Error::Corrupt(format!(
                "snapshot stream sent more than the {} bytes its header announced",
                header.size
            )));
        }
        whole.update(&chunk.data);
        out.write_all(&chunk.data).await?;
        if bytes_per_second > 0 {
            let due = Duration::from_secs_f64(bytes as f64 / bytes_per_second as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    };
    if trailer.header_crc32 != crc32fast::hash(&header.encode_to_vec()) {
        return Err(Error::Corrupt(
            "snapshot header is corrupt (checksum mismatch)".into(),
        ));
    }
    if trailer.size != bytes || header.size != bytes || trailer.crc32 != whole.finalize() {
        return Err(Error::Corrupt(format!(
            "snapshot is truncated or corrupt: {bytes} bytes received, {} announced",
            trailer.size
        )));
    }
    out.sync_all().await?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u64) -> SnapshotChunk {
        SnapshotChunk {
            header: Some(SnapshotHeader {
                table: "t".into(),
                size,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn data(bytes: &[u8]) -> SnapshotChunk {
        SnapshotChunk {
            data: bytes.to_vec(),
            crc32: crc32fast::hash(bytes),
            ..Default::default()
        }
    }

    /// The trailer of `whole` after [`header`] announcing `size` bytes.
    fn trailer_for(size: u64, whole: &[u8]) -> SnapshotChunk {
        let header = header(size).header.unwrap();
        SnapshotChunk {
            trailer: Some(SnapshotTrailer {
                size: whole.len() as u64,
                crc32: crc32fast::hash(whole),
                header_crc32: crc32fast::hash(&header.encode_to_vec()),
            }),
            ..Default::default()
        }
    }

    fn trailer(whole: &[u8]) -> SnapshotChunk {
        trailer_for(whole.len() as u64, whole)
    }

    async fn receive(chunks: Vec<SnapshotChunk>) -> Result<SnapshotHeader> {
        let dir = tempfile::tempdir().unwrap();
        let stream = futures::stream::iter(chunks.into_iter().map(Ok));
        receive_snapshot(stream, &dir.path().join("s.mdb"), 0).await
    }

    #[tokio::test]
    async fn snapshots_are_verified_before_use() {
        let ok = vec![header(6), data(b"abc"), data(b"def"), trailer(b"abcdef")];
        assert_eq!(receive(ok).await.unwrap().size, 6);

        let mut flipped = data(b"abc");
        flipped.data[0] ^= 1;
        let corrupt = vec![header(6), flipped, data(b"def"), trailer(b"abcdef")];
        let e = receive(corrupt).await.unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");

        let truncated = vec![header(6), data(b"abc")];
        let e = receive(truncated).await.unwrap_err().to_string();
        assert!(e.contains("ended before its trailer"), "{e}");

        let short = vec![header(6), data(b"abc"), trailer_for(6, b"abcdef")];
        let e = receive(short).await.unwrap_err().to_string();
        assert!(e.contains("truncated or corrupt"), "{e}");

        let headless = vec![data(b"abc"), trailer(b"abc")];
        assert!(receive(headless).await.is_err());

        // A header changed in transit (here its leader index) is refused.
        let mut bent = header(6);
        bent.header.as_mut().unwrap().leader_index = 99;
        let e = receive(vec![bent, data(b"abcdef"), trailer(b"abcdef")]).await;
        assert!(e.unwrap_err().to_string().contains("header is corrupt"));

        // More than announced is refused at the chunk that passes the
        // announced size, before it is written.
        let endless = vec![header(4), data(b"abc"), data(b"def"), data(b"ghi")];
        let e = receive(endless).await.unwrap_err().to_string();
        assert!(e.contains("more than the 4 bytes"), "{e}");
    }
}
