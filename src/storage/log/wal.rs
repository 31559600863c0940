//! The Raft log of one table as an append-only, segmented file log (the
//! `wal` engine of `--raft.logdb`), in the manner of etcd's WAL and
//! dragonboat's tan: a write batch is one sequential `pwrite` and one
//! `fdatasync`, where an LMDB commit rewrites B-tree pages and syncs twice.
//!
//! On disk, a directory of segment files `<seq>.wal`, each written full of
//! zeros before use (so a sync has no file metadata to write: ext4 journals
//! the first write into an `fallocate`d extent, which made each sync ~60%
//! slower here) and filled with records:
//!
//! ```text
//! crc32 u32 LE | len u32 LE | kind u8 | payload (len - 1 bytes)
//!   entry     index u64 LE | the entry's bytes
//!   state     name len u16 LE | name | value    (vote, committed, last purged)
//!   truncate  from u64 LE                        (entries >= from are gone)
//!   purge     upto u64 LE                        (entries <= upto are gone)
//! ```
//!
//! The crc covers kind and payload. A new segment starts with a checkpoint
//! (every state value and the purge mark), so older segments hold nothing
//! that is still needed once their entries are purged, and a purge deletes
//! them whole. Opening replays every segment in order into an in-memory
//! index of where each live entry's bytes are; reads are `pread`s through
//! it. Invariants:
//! - a write returns only after its bytes are synced: an acknowledged entry
//!   or vote survives a crash;
//! - records end at the first all-zero header (unwritten preallocation);
//!   a bad record ends the last segment (a write torn by a crash, never
//!   acknowledged: it is cut off at open), and is corruption anywhere else;
//! - live entries are contiguous, from the first unpurged index on.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::ReadBudget;
use crate::error::{Error, Result};

const HEADER: usize = 8;
const ENTRY: u8 = 1;
const STATE: u8 = 2;
const TRUNCATE: u8 = 3;
const PURGE: u8 = 4;
/// A segment's size (less with a small budget). Zero-filling one takes a
/// few milliseconds, off the write path.
const SEGMENT_BYTES: u64 = 4 << 20;
/// Bytes before an entry's own bytes in its record.
const ENTRY_PREFIX: u64 = HEADER as u64 + 1 + 8;

/// Where a live entry's bytes are.
#[derive(Clone, Copy)]
struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    /// Bytes of records written (the rest is preallocation).
    written: u64,
    /// The highest entry index written into it (0: none).
    last_index: u64,
}

/// What replay rebuilds and readers consult.
#[derive(Default)]
struct Index {
    segments: BTreeMap<u64, Segment>,
    /// The index of `entries[0]`.
    first: u64,
    entries: VecDeque<Loc>,
    state: BTreeMap<String, Vec<u8>>,
    /// Entries through this index are purged.
    purged: Option<u64>,
}

impl Index {
    fn next_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    fn put(&mut self, index: u64, loc: Loc) {
        if self.purged.is_some_and(|p| index <= p) {
            return;
        }
        if self.entries.is_empty() || index < self.first || index > self.next_index() {
            // A first entry, or one after a purge past the log's end.
            self.entries.clear();
            self.first = index;
        } else {
            self.entries.truncate((index - self.first) as usize);
        }
        self.entries.push_back(loc);
    }

    fn truncate(&mut self, from: u64) {
        if from <= self.first {
            self.entries.clear();
        } else {
            let keep = (from - self.first).min(self.entries.len() as u64);
            self.entries.truncate(keep as usize);
        }
    }

    fn purge(&mut self, upto: u64) {
        let upto = self.purged.map_or(upto, |p| p.max(upto));
        self.purged = Some(upto);
        while !self.entries.is_empty() && self.first <= upto {
            self.entries.pop_front();
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = upto + 1;
        }
    }

    fn loc(&self, index: u64) -> Option<Loc> {
        let i = index.checked_sub(self.first)?;
        self.entries.get(i as usize).copied()
    }

    /// Records how far `w` has written its segment, and the highest entry
    /// index it put there.
    fn wrote(&mut self, w: &Writer, last_index: Option<u64>) {
        let segment = self.segments.get_mut(&w.seq).expect("the written segment");
        segment.written = w.tail;
        segment.last_index = segment.last_index.max(last_index.unwrap_or(0));
    }

    fn file(&self, seq: u64) -> Result<Arc<File>> {
        (self.segments.get(&seq).map(|s| s.file.clone()))
            .ok_or_else(|| Error::Internal(format!("wal segment {seq} is gone")))
    }
}

/// The segment being written.
struct Writer {
    seq: u64,
    file: Arc<File>,
    tail: u64,
    /// The next segment's file, being zero-filled in the background.
    next: Option<std::thread::JoinHandle<Result<File>>>,
}

pub(crate) struct Wal {
    dir: PathBuf,
    /// Preallocated size of a segment; a segment rolls over past it.
    segment_bytes: u64,
    /// How many bytes of records the log may hold (its quota).
    budget: u64,
    writer: Mutex<Writer>,
    index: RwLock<Index>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn encode(buf: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    buf.push(kind);
    for p in parts {
        buf.extend_from_slice(p);
    }
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
}

fn encode_state(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    let len = (name.len() as u16).to_le_bytes();
    encode(buf, STATE, &[&len, name.as_bytes(), value]);
}

/// Writes zeros into `file` from `from` to `to`, and syncs it.
fn zero_fill(file: &File, from: u64, to: u64) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0; CHUNK as usize];
    let mut at = from;
    while at < to {
        let n = CHUNK.min(to - at);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    file.sync_all()?;
    Ok(())
}

/// The path a segment is prepared at before it is put in place.
fn prepared_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{}.tmp", segment_name(seq)))
}

/// Creates segment `seq`'s file at its prepared path, zero-filled.
fn prepare(dir: &Path, seq: u64, segment_bytes: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(prepared_path(dir, seq))?;
    zero_fill(&file, 0, segment_bytes)?;
    Ok(file)
}

/// Prepares segment `seq` on a thread of its own.
fn prepare_in_background(
    dir: &Path,
    seq: u64,
    segment_bytes: u64,
) -> std::thread::JoinHandle<Result<File>> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || prepare(&dir, seq, segment_bytes))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn u64_at(b: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(
        b.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Corrupt("wal record too short".into()))?,
    ))
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, replaying its segments.
    /// `budget` is the log's quota in bytes (the LMDB engine's map size).
    pub fn open(dir: &Path, budget: usize) -> Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let segment_bytes = (budget as u64 / 16).clamp(1 << 20, SEGMENT_BYTES);
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name.strip_suffix(".wal") {
                let seq = u64::from_str_radix(seq, 16)
                    .map_err(|_| Error::Corrupt(format!("wal: stray segment {name}")))?;
                seqs.push(seq);
            } else if name.ends_with(".wal.tmp") {
                std::fs::remove_file(dir.join(&name))?;
            }
        }
        seqs.sort_unstable();
        let mut index = Index::default();
        let mut tail = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let last = i + 1 == seqs.len();
            let path = dir.join(segment_name(seq));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let (written, last_index) = replay(&file, seq, &mut index, last)
                .map_err(|e| Error::Corrupt(format!("wal {}: {e}", path.display())))?;
            if last {
                // Whatever follows the last good record was never
                // acknowledged: zeros from there on.
                file.set_len(written)?;
                zero_fill(&file, written, segment_bytes)?;
                tail = written;
            }
            let file = Arc::new(file);
            index.segments.insert(
                seq,
                Segment {
                    file,
                    written,
                    last_index,
                },
            );
        }
        let seq = match seqs.last() {
            Some(&seq) => seq,
            None => {
                let file = prepare(dir, 1, segment_bytes)?;
                let (file, written) = Self::install_segment(dir, 1, file, &index)?;
                let segment = Segment {
                    file,
                    written,
                    last_index: 0,
                };
                index.segments.insert(1, segment);
                tail = written;
                1
            }
        };
        let writer = Writer {
            seq,
            file: index.segments[&seq].file.clone(),
            tail,
            next: Some(prepare_in_background(dir, seq + 1, segment_bytes)),
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            budget: budget as u64,
            writer: Mutex::new(writer),
            index: RwLock::new(index),
        })
    }

    /// Puts segment `seq`, prepared as `file`, in place, durably, starting
    /// with the checkpoint of `index`'s state and purge mark; returns it and
    /// its written bytes.
    fn install_segment(
        dir: &Path,
        seq: u64,
        file: File,
        index: &Index,
    ) -> Result<(Arc<File>, u64)> {
        let mut buf = Vec::new();
        for (name, value) in &index.state {
            encode_state(&mut buf, name, value);
        }
        if let Some(purged) = index.purged {
            encode(&mut buf, PURGE, &[&purged.to_le_bytes()]);
        }
        file.write_all_at(&buf, 0)?;
        file.sync_data()?;
        std::fs::rename(prepared_path(dir, seq), dir.join(segment_name(seq)))?;
        sync_dir(dir)?;
        Ok((Arc::new(file), buf.len() as u64))
    }

    /// Writes `buf` (whole records) at the writer's tail, synced, rolling
    /// over to a new segment first if this one is full; returns the
    /// segment and offset written at.
    fn write(&self, w: &mut Writer, buf: &[u8]) -> Result<(u64, u64)> {
        if w.tail + buf.len() as u64 > self.segment_bytes && w.tail > 0 {
            self.roll(w)?;
        }
        w.file.write_all_at(buf, w.tail)?;
        w.file.sync_data()?;
        let at = w.tail;
        w.tail += buf.len() as u64;
        Ok((w.seq, at))
    }

    /// Makes the next segment (prepared in the background) the one written.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let seq = w.seq + 1;
        let prepared = match w.next.take().map(|t| t.join()) {
            Some(Ok(prepared)) => prepared?,
            // The preparing thread panicked: prepare here.
            Some(Err(_)) | None => prepare(&self.dir, seq, self.segment_bytes)?,
        };
        let (file, tail) = {
            let index = self.index.read();
            Self::install_segment(&self.dir, seq, prepared, &index)?
        };
        let segment = Segment {
            file: file.clone(),
            written: tail,
            last_index: 0,
        };
        self.index.write().segments.insert(seq, segment);
        *w = Writer {
            seq,
            file,
            tail,
            next: Some(prepare_in_background(
                &self.dir,
                seq + 1,
                self.segment_bytes,
            )),
        };
        Ok(())
    }

    /// Appends (or overwrites from their first index on) entries, and
    /// records the `state` values given, synced together.
    pub fn append(
        &self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
        state: &[(&str, &[u8])],
    ) -> Result<()> {
        let mut w = self.writer.lock();
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for (index, bytes) in entries {
            placed.push((index, buf.len() as u64 + ENTRY_PREFIX, bytes.len() as u32));
            encode(&mut buf, ENTRY, &[&index.to_le_bytes(), &bytes]);
        }
        for (name, value) in state {
            encode_state(&mut buf, name, value);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let (seq, at) = self.write(&mut w, &buf)?;
        let mut index = self.index.write();
        for &(i, offset, len) in &placed {
            index.put(
                i,
                Loc {
                    seq,
                    offset: at + offset,
                    len,
                },
            );
        }
        for (name, value) in state {
            index.state.insert(name.to_string(), value.to_vec());
        }
        index.wrote(&w, placed.iter().map(|p| p.0).max());
        Ok(())
    }

    /// Entries with `start <= index < end`, stopping once `max_bytes` of
    /// them were read (at least one entry is returned if any is in range).
    pub fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let wanted = {
            let index = self.index.read();
            let mut wanted = Vec::new();
            let mut budget = ReadBudget::new(max_bytes);
            let mut i = start.max(index.first);
            while end.is_none_or(|e| i < e) {
                let Some(loc) = index.loc(i) else { break };
                if !budget.admits(loc.len as usize) {
                    break;
                }
                wanted.push((i, loc, index.file(loc.seq)?));
                i += 1;
            }
            wanted
        };
        // Read outside the lock: an unlinked (purged) segment stays
        // readable through its open file.
        wanted
            .into_iter()
            .map(|(i, loc, file)| {
                let mut bytes = vec![0; loc.len as usize];
                file.read_exact_at(&mut bytes, loc.offset)?;
                Ok((i, bytes))
            })
            .collect()
    }

    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let last = {
            let index = self.index.read();
            match index.next_index().checked_sub(1) {
                Some(i) if !index.entries.is_empty() => Some(i),
                _ => None,
            }
        };
        match last {
            Some(i) => Ok(self.entries(i, Some(i + 1), usize::MAX)?.pop()),
            None => Ok(None),
        }
    }

    /// Deletes entries with index >= `from`.
    pub fn truncate(&self, from: u64) -> Result<()> {
        let mut w = self.writer.lock();
        let mut buf = Vec::new();
        encode(&mut buf, TRUNCATE, &[&from.to_le_bytes()]);
        self.write(&mut w, &buf)?;
        let mut index = self.index.write();
        index.truncate(from);
        index.wrote(&w, None);
        Ok(())
    }

    /// Deletes entries with index <= `upto` and records `state` (the last
    /// purged id) in the same write; removes the segments left with nothing
    /// live.
    pub fn purge(&self, upto: u64, name: &str, state: &[u8]) -> Result<()> {
        let mut w = self.writer.lock();
        let mut buf = Vec::new();
        encode_state(&mut buf, name, state);
        encode(&mut buf, PURGE, &[&upto.to_le_bytes()]);
        self.write(&mut w, &buf)?;
        let mut index = self.index.write();
        index.state.insert(name.to_string(), state.to_vec());
        index.purge(upto);
        index.wrote(&w, None);
        let current = w.seq;
        // Oldest first: a later segment's checkpoint holds the state an
        // older one recorded.
        while let Some((&seq, segment)) = index.segments.first_key_value() {
            if seq == current || segment.last_index > upto {
                break;
            }
            index.segments.remove(&seq);
            std::fs::remove_file(self.dir.join(segment_name(seq)))?;
        }
        Ok(())
    }

    pub fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.index.read().state.get(name).cloned())
    }

    pub fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        self.append(std::iter::empty(), &[(name, value)])
    }

    /// How full the log is: the bytes of its records against its budget.
    pub fn space(&self) -> super::super::Space {
        let index = self.index.read();
        super::super::Space {
            map: self.budget,
            in_use: index.segments.values().map(|s| s.written).sum(),
        }
    }

    /// The size of the segment files on disk.
    pub fn disk_size(&self) -> u64 {
        let index = self.index.read();
        (index.segments.values())
            .map(|s| s.file.metadata().map_or(0, |m| m.len()))
            .sum()
    }
}

/// Replays segment `seq` into `index`; returns the bytes of good records
/// and the highest entry index in it. A bad record ends the last segment
/// and is an error in any other.
fn replay(file: &File, seq: u64, index: &mut Index, last: bool) -> Result<(u64, u64)> {
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut &*file, &mut data)?;
    let mut at = 0usize;
    let mut last_index = 0;
    while let Some(header) = data.get(at..at + HEADER) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let crc = u32::from_le_bytes(header[..4].try_into().unwrap());
        let len = u32::from_le_bytes(header[4..].try_into().unwrap()) as usize;
        let body = data.get(at + HEADER..at + HEADER + len);
        let good = body.is_some_and(|b| len > 0 && crc32fast::hash(b) == crc);
        let Some(body) = body.filter(|_| good) else {
            if last {
                break;
            }
            return Err(Error::Corrupt(format!("bad record at offset {at}")));
        };
        let payload = &body[1..];
        match body[0] {
            ENTRY => {
                let i = u64_at(payload)?;
                let offset = (at as u64) + ENTRY_PREFIX;
                let len = (payload.len() - 8) as u32;
                index.put(i, Loc { seq, offset, len });
                last_index = last_index.max(i);
            }
            STATE => {
                let n = u16::from_le_bytes(
                    (payload.get(..2).and_then(|b| b.try_into().ok()))
                        .ok_or_else(|| Error::Corrupt("short state record".into()))?,
                ) as usize;
                let name = payload
                    .get(2..2 + n)
                    .ok_or_else(|| Error::Corrupt("short state record".into()))?;
                let name = String::from_utf8_lossy(name).into_owned();
                index.state.insert(name, payload[2 + n..].to_vec());
            }
            TRUNCATE => index.truncate(u64_at(payload)?),
            PURGE => index.purge(u64_at(payload)?),
            kind => return Err(Error::Corrupt(format!("unknown record kind {kind}"))),
        }
        at += HEADER + len;
    }
    Ok((at as u64, last_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> (u64, Vec<u8>) {
        (i, format!("entry {i}").into_bytes())
    }

    fn indexes(wal: &Wal) -> Vec<u64> {
        let all = wal.entries(0, None, usize::MAX).unwrap();
        for (i, bytes) in &all {
            assert_eq!(bytes, &entry(*i).1);
        }
        all.into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn appends_truncates_purges_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        wal.append((1..=10).map(entry), &[("vote", b"v1")]).unwrap();
        wal.truncate(8).unwrap();
        wal.append((8..=12).map(entry), &[]).unwrap();
        // An append over existing entries replaces them from its first.
        wal.append((11..=13).map(entry), &[]).unwrap();
        wal.purge(3, "last_purged", b"p3").unwrap();
        assert_eq!(indexes(&wal), (4..=13).collect::<Vec<_>>());
        assert_eq!(wal.last().unwrap().unwrap().0, 13);
        assert_eq!(wal.entries(5, Some(7), usize::MAX).unwrap().len(), 2);
        // Bounded by bytes, at least one entry.
        assert_eq!(wal.entries(5, None, 1).unwrap().len(), 1);
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        assert_eq!(indexes(&wal), (4..=13).collect::<Vec<_>>());
        assert_eq!(wal.get_state("vote").unwrap().unwrap(), b"v1");
        assert_eq!(wal.get_state("last_purged").unwrap().unwrap(), b"p3");
        // A purge past the end leaves an empty log that goes on after it.
        wal.purge(20, "last_purged", b"p20").unwrap();
        assert_eq!(wal.last().unwrap(), None);
        wal.append((21..=22).map(entry), &[]).unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        assert_eq!(indexes(&wal), [21, 22]);
    }

    #[test]
    fn segments_roll_over_and_purges_delete_them() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB segments; entries of 100 KiB.
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        let big = |i: u64| (i, vec![i as u8; 100 << 10]);
        for i in 1..=40 {
            wal.append([big(i)], &[("committed", &i.to_le_bytes())])
                .unwrap();
        }
        let segments = || {
            let names = std::fs::read_dir(dir.path()).unwrap();
            (names.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            }))
            .count()
        };
        assert!(segments() >= 4, "{} segments", segments());
        wal.purge(35, "last_purged", b"p35").unwrap();
        assert!(segments() <= 2, "{} segments", segments());
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        let left: Vec<u64> = (wal.entries(0, None, usize::MAX).unwrap().iter())
            .map(|e| e.0)
            .collect();
        assert_eq!(left, (36..=40).collect::<Vec<_>>());
        assert_eq!(
            wal.get_state("committed").unwrap().unwrap(),
            40u64.to_le_bytes()
        );
        assert_eq!(wal.entries(40, None, usize::MAX).unwrap()[0].1, big(40).1);
    }

    /// A write torn by a crash (never acknowledged) is cut off at open;
    /// the records before it stay and writing goes on after them.
    #[test]
    fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        wal.append((1..=5).map(entry), &[]).unwrap();
        let tail = wal.writer.lock().tail;
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        // Half a record: a header announcing more than was written.
        let mut torn = Vec::new();
        encode(&mut torn, ENTRY, &[&6u64.to_le_bytes(), b"entry 6"]);
        file.write_all_at(&torn[..torn.len() / 2], tail).unwrap();
        drop(file);
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        assert_eq!(indexes(&wal), (1..=5).collect::<Vec<_>>());
        wal.append((6..=7).map(entry), &[]).unwrap();
        drop(wal);
        let wal = Wal::open(dir.path(), 1 << 24).unwrap();
        assert_eq!(indexes(&wal), (1..=7).collect::<Vec<_>>());
    }

    #[test]
    fn a_bad_record_before_the_last_segment_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=20 {
            wal.append([(i, vec![1; 100 << 10])], &[]).unwrap();
        }
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        file.write_all_at(b"garbage!", 200).unwrap();
        drop(file);
        match Wal::open(dir.path(), 1 << 20) {
            Err(Error::Corrupt(e)) => assert!(e.contains("bad record"), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a corrupt log"),
        }
    }
}
