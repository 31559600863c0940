//! Accepts the `:authority` that etcd 3.4's clientv3 sends on per-endpoint
//! connections. `etcdctl --endpoints=http://h:p endpoint status` (also
//! `defrag`, `endpoint hashkv`, `snapshot save`) dials
//! `passthrough:///http://h:p`, and grpc-go then sends `:authority:
//! http://h:p`. etcd's Go server ignores it; the `h2` crate rejects it as a
//! malformed authority and resets the stream with PROTOCOL_ERROR.
//!
//! [`LenientAuthority`] sits between the TCP socket and the HTTP/2 server and
//! rewrites, in the client-to-server byte stream only, a literal `:authority`
//! header whose value carries a `scheme://` prefix into the bare `h:p`. It
//! parses just HTTP/2 frame headers and, inside single-frame HEADERS blocks,
//! HPACK representations (no header is otherwise decoded or re-ordered).
//!
//! Invariant: the HPACK dynamic tables of client and server stay in step. A
//! literal with incremental indexing still adds one entry at the same
//! position; its value is only shorter, and a smaller entry can only make the
//! server evict later than the client, which never shifts the indices of
//! entries the client may still reference (they count from the newest).
//! Anything the rewriter does not understand passes through byte for byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE: a rewritten frame never grows past it.
const MAX_FRAME: usize = 16_384;
/// `:authority` is entry 1 of HPACK's static table.
const AUTHORITY_INDEX: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// The client connection preface: this many bytes still pass unchanged.
    Preface(usize),
    /// Waiting for a whole 9-byte frame header.
    FrameHeader,
    /// Inside a frame we do not rewrite: this many payload bytes pass unchanged.
    Passthrough(usize),
    /// Buffering a HEADERS frame's payload of this length.
    Headers { len: usize, flags: u8 },
}

/// A server-side connection whose inbound HTTP/2 stream has `scheme://`
/// stripped from literal `:authority` values.
pub(crate) struct LenientAuthority<S> {
    inner: S,
    state: State,
    /// Bytes read from `inner` and not yet processed.
    pending: Vec<u8>,
    /// Processed bytes not yet handed to the reader.
    ready: Vec<u8>,
    ready_at: usize,
    eof: bool,
}

impl<S> LenientAuthority<S> {
    pub fn new(inner: S) -> Self {
        LenientAuthority {
            inner,
            state: State::Preface(PREFACE_LEN),
            pending: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            eof: false,
        }
    }

    /// Moves as much of `pending` as the state machine allows into `ready`.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Preface(n) | State::Passthrough(n) => {
                    let take = n.min(self.pending.len());
                    if take == 0 && n > 0 {
                        return;
                    }
                    self.ready.extend(self.pending.drain(..take));
                    self.state = match (self.state, n - take) {
                        (_, 0) => State::FrameHeader,
                        (State::Preface(_), left) => State::Preface(left),
                        (_, left) => State::Passthrough(left),
                    };
                }
                State::FrameHeader => {
                    if self.pending.len() < FRAME_HEADER_LEN {
                        return;
                    }
                    let h = &self.pending[..FRAME_HEADER_LEN];
                    let len =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    if kind == FRAME_HEADERS && flags & FLAG_END_HEADERS != 0 && len <= MAX_FRAME {
                        self.state = State::Headers { len, flags };
                    } else {
                        self.ready.extend(self.pending.drain(..FRAME_HEADER_LEN));
                        self.state = State::Passthrough(len);
                    }
                }
                State::Headers { len, flags } => {
                    if self.pending.len() < FRAME_HEADER_LEN + len {
                        return;
                    }
                    let frame: Vec<u8> = self.pending.drain(..FRAME_HEADER_LEN + len).collect();
                    match rewrite_headers_frame(&frame, flags) {
                        Some(new) => self.ready.extend(new),
                        None => self.ready.extend(frame),
                    }
                    self.state = State::FrameHeader;
                }
            }
        }
    }
}

/// Returns the frame with `:authority` rewritten, or `None` to leave it as is.
fn rewrite_headers_frame(frame: &[u8], flags: u8) -> Option<Vec<u8>> {
    let payload = &frame[FRAME_HEADER_LEN..];
    let pad = if flags & FLAG_PADDED != 0 {
        usize::from(*payload.first()?)
    } else {
        0
    };
    let start =
        usize::from(flags & FLAG_PADDED != 0) + if flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
    let end = payload.len().checked_sub(pad)?;
    if start > end {
        return None;
    }
    let block = rewrite_block(&payload[start..end])?;
    let new_len = start + block.len() + pad;
    if new_len > MAX_FRAME {
        return None;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + new_len);
    out.extend_from_slice(&(new_len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&frame[3..FRAME_HEADER_LEN]);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&block);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// Walks an HPACK header block; returns a rewritten block if it changed anything.
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut changed = false;
    let mut pos = 0;
    while pos < block.len() {
        let rep_start = pos;
        let b = block[pos];
        let name_index = if b & 0x80 != 0 {
            decode_int(block, &mut pos, 7)?; // indexed field
            None
        } else if b & 0xc0 == 0x40 {
            Some(decode_int(block, &mut pos, 6)?) // literal, incremental indexing
        } else if b & 0xe0 == 0x20 {
            decode_int(block, &mut pos, 5)?; // dynamic table size update
            None
        } else {
            Some(decode_int(block, &mut pos, 4)?) // literal, not / never indexed
        };
        let Some(name_index) = name_index else {
            out.extend_from_slice(&block[rep_start..pos]);
            continue;
        };
        if name_index == 0 {
            skip_string(block, &mut pos)?;
        }
        let value_start = pos;
        if name_index != AUTHORITY_INDEX {
            // Only `:authority` matters: other values are skipped undecoded.
            skip_string(block, &mut pos)?;
            out.extend_from_slice(&block[rep_start..pos]);
            continue;
        }
        let value = read_string(block, &mut pos)?;
        match strip_scheme(&value) {
            Some(bare) => {
                out.extend_from_slice(&block[rep_start..value_start]);
                encode_int(&mut out, 0x00, 7, bare.len() as u64);
                out.extend_from_slice(bare);
                changed = true;
            }
            None => out.extend_from_slice(&block[rep_start..pos]),
        }
    }
    changed.then_some(out)
}

/// `http://h:p` → `h:p` (any `scheme://`), when what follows is non-empty.
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let at = value.windows(3).position(|w| w == b"://")?;
    let scheme = &value[..at];
    let bare = &value[at + 3..];
    let plain_scheme = !scheme.is_empty()
        && scheme
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    (plain_scheme && !bare.is_empty()).then_some(bare)
}

/// HPACK integer (RFC 7541 §5.1) with an n-bit prefix, starting at `*pos`.
fn decode_int(buf: &[u8], pos: &mut usize, prefix_bits: u8) -> Option<u64> {
    let max = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(*buf.get(*pos)?) & max;
    *pos += 1;
    if value < max {
        return Some(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value = value.checked_add(u64::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
}

fn encode_int(out: &mut Vec<u8>, first_bits: u8, prefix_bits: u8, value: u64) {
    let max = (1u64 << prefix_bits) - 1;
    if value < max {
        out.push(first_bits | value as u8);
        return;
    }
    out.push(first_bits | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// The extent of an HPACK string literal: (huffman, start, end).
fn string_extent(buf: &[u8], pos: &mut usize) -> Option<(bool, usize, usize)> {
    let huffman = *buf.get(*pos)? & 0x80 != 0;
    let len = usize::try_from(decode_int(buf, pos, 7)?).ok()?;
    let start = *pos;
    let end = start.checked_add(len).filter(|&e| e <= buf.len())?;
    *pos = end;
    Some((huffman, start, end))
}

fn skip_string(buf: &[u8], pos: &mut usize) -> Option<()> {
    string_extent(buf, pos).map(|_| ())
}

fn read_string(buf: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let (huffman, start, end) = string_extent(buf, pos)?;
    if huffman {
        thread_local! {
            // Building the decoder's tables costs far more than decoding.
            static DECODER: std::cell::RefCell<loona_hpack::huffman::HuffmanDecoder> =
                std::cell::RefCell::new(loona_hpack::huffman::HuffmanDecoder::new());
        }
        DECODER.with(|d| d.borrow_mut().decode(&buf[start..end]).ok())
    } else {
        Some(buf[start..end].to_vec())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever is left is an incomplete frame: hand it over as is
                // and let the HTTP/2 server report the truncation.
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready = std::mem::take(&mut this.pending);
                continue;
            }
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(rb.filled());
                        this.process();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for LenientAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(first: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        encode_int(&mut out, 0, 7, value.len() as u64);
        out.extend_from_slice(value);
        out
    }

    fn headers_frame(flags: u8, block: &[u8]) -> Vec<u8> {
        let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[FRAME_HEADERS, flags, 0, 0, 0, 1]);
        f.extend_from_slice(block);
        f
    }

    #[test]
    fn integers_round_trip() {
        for (bits, v) in [
            (7, 0),
            (7, 126),
            (7, 127),
            (7, 128),
            (4, 15),
            (5, 1_000_000),
        ] {
            let mut buf = Vec::new();
            encode_int(&mut buf, 0, bits, v);
            let mut pos = 0;
            assert_eq!(decode_int(&buf, &mut pos, bits), Some(v));
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn strips_scheme_from_literal_authority() {
        // :method POST (indexed 3), :authority literal with incremental indexing.
        let mut block = vec![0x83];
        block.extend(literal(0x41, b"http://127.0.0.1:2379"));
        block.extend(literal(0x40 | 31, b"application/grpc")); // content-type, untouched
        let out = rewrite_block(&block).unwrap();
        let mut want = vec![0x83];
        want.extend(literal(0x41, b"127.0.0.1:2379"));
        want.extend(literal(0x40 | 31, b"application/grpc"));
        assert_eq!(out, want);
    }

    #[test]
    fn leaves_valid_authorities_and_other_headers_alone() {
        let mut block = literal(0x41, b"127.0.0.1:2379");
        block.extend(literal(0x0f, b"x")); // not indexed, name index 15
        block.push(0x00); // literal, new name
        block.extend(literal(0x00, b"x-url")[1..].to_vec());
        block.extend(literal(0x00, b"http://a")[1..].to_vec());
        assert_eq!(rewrite_block(&block), None);
    }

    #[test]
    fn decodes_huffman_authority() {
        // "www.example.com" Huffman-coded, from RFC 7541 C.4.1.
        let huff = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut block = vec![0x41, 0x80 | huff.len() as u8];
        block.extend(huff);
        assert_eq!(rewrite_block(&block), None, "no scheme, nothing to do");
        let mut pos = 1;
        assert_eq!(read_string(&block, &mut pos).unwrap(), b"www.example.com");
    }

    #[tokio::test]
    async fn stream_rewrites_only_headers_frames() {
        use tokio::io::AsyncReadExt;
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let settings = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let data = {
            let mut d = vec![0, 0, 5, 0x0, 0x1, 0, 0, 0, 1];
            d.extend(b"http:");
            d
        };
        let mut input = preface.clone();
        input.extend(settings);
        input.extend(headers_frame(
            FLAG_END_HEADERS,
            &literal(0x41, b"http://h:1"),
        ));
        input.extend(&data);
        let mut want = preface;
        want.extend(settings);
        want.extend(headers_frame(FLAG_END_HEADERS, &literal(0x41, b"h:1")));
        want.extend(&data);

        // Feed the input one byte at a time to exercise every partial state.
        let (mut client, server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&input).await.unwrap();
        });
        let mut got = Vec::new();
        LenientAuthority::new(server)
            .read_to_end(&mut got)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got, want);
    }
}
