//! The fault proxy: one TCP listener per directed link `from -> to`. Node `from` dials the
//! listener instead of node `to`'s peer address; the proxy dials `to` and pumps bytes, applying
//! the link's current [`LinkMode`] to every chunk it reads.
//!
//! Keel's peer transport uses one-way connections (the dialer sends frames; the other direction
//! carries only the handshake answer), so a directed link is exactly one fault domain: cutting
//! `1 -> 2` silences 1's messages to 2 and nothing else.
//!
//! Modes take effect at once on open connections (each pump watches the mode):
//! - `Pass`: bytes flow.
//! - `BlackHole`: connections stay open, every byte read is discarded (a silent partition: the
//!   sender's TCP stream looks healthy).
//! - `Refuse`: open connections are reset and new ones closed at once (a loud partition).
//! - `Delay`: each chunk is held `base ± jitter` ms; chunks keep their order within one
//!   connection (TCP), so delay with jitter reorders frames only across connections (the
//!   transport's two lanes).
//!
//! - `Duplicate`: every whole peer frame (4-byte big-endian length, then the payload: the
//!   transport's length-delimited codec) is written twice. Only the dialer's direction, and
//!   never the connection's first frame (the `Hello` handshake). Raft messages are idempotent
//!   by term and index, so the protocol allows it. The pump tracks frame boundaries in every
//!   mode, so switching to `Duplicate` mid-stream starts at the next frame; a stream that does
//!   not look length-delimited (a length above `DUPLICATE_FRAME_BYTES_MAX`) is never
//!   duplicated.
//!
//! [`LinkProxy::reset`] closes every open connection once, whatever the mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes read per chunk.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Open connections per link, at most (more are closed at once).
pub const CONNECTIONS_PER_LINK_MAX: u64 = 64;
/// Longest delay a link may impose on one chunk.
pub const DELAY_MS_MAX: u64 = 10_000;
const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Frames longer than this are passed once, never duplicated (and a length above it means
/// the stream is not length-delimited at all: framing is abandoned for that connection).
pub const DUPLICATE_FRAME_BYTES_MAX: usize = 4 << 20;
/// Bytes of a peer frame's length prefix (tokio-util's `LengthDelimitedCodec` default).
const FRAME_HEADER_BYTES: usize = 4;

/// What a link does to traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    BlackHole,
    Refuse,
    Delay {
        base_ms: u64,
        jitter_ms: u64,
    },
    /// Every whole frame after the handshake written twice (dialer direction).
    Duplicate,
}

impl LinkMode {
    pub fn name(self) -> String {
        match self {
            LinkMode::Pass => "pass".to_string(),
            LinkMode::BlackHole => "black-hole".to_string(),
            LinkMode::Refuse => "refuse".to_string(),
            LinkMode::Delay { base_ms, jitter_ms } => format!("delay {base_ms}±{jitter_ms}ms"),
            LinkMode::Duplicate => "duplicate".to_string(),
        }
    }

    fn blocks(self) -> bool {
        matches!(self, LinkMode::BlackHole | LinkMode::Refuse)
    }
}

/// Traffic counters of one link.
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub bytes_passed: AtomicU64,
    pub bytes_dropped: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_reset: AtomicU64,
    /// Frames written a second time by `Duplicate`.
    pub frames_duplicated: AtomicU64,
    connections_open: AtomicU64,
}

/// Mode plus a generation bumped by every reset, so pumps can tell "reset now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    mode: LinkMode,
    generation: u64,
}

/// One directed link's proxy. Dropping it stops the listener and every pump.
pub struct LinkProxy {
    pub from: u64,
    pub to: u64,
    pub listen_addr: String,
    pub counters: Arc<LinkCounters>,
    control: watch::Sender<Control>,
    target: Arc<Mutex<String>>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        // Closing the watch channel ends every pump.
        self.control.send_modify(|c| {
            c.mode = LinkMode::Refuse;
            c.generation += 1;
        });
    }
}

impl LinkProxy {
    /// Binds a listener on a free loopback port that forwards to `target` (`host:port`).
    pub async fn start(from: u64, to: u64, target: String, seed: u64) -> std::io::Result<Self> {
        assert!(from != to, "a link joins two different nodes");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen_addr = listener.local_addr()?.to_string();
        let (control, control_rx) = watch::channel(Control {
            mode: LinkMode::Pass,
            generation: 0,
        });
        let counters = Arc::new(LinkCounters::default());
        let target = Arc::new(Mutex::new(target));
        let accept_task = tokio::spawn(accept_loop(
            listener,
            control_rx,
            Arc::clone(&counters),
            Arc::clone(&target),
            seed,
        ));
        Ok(LinkProxy {
            from,
            to,
            listen_addr,
            counters,
            control,
            target,
            accept_task,
        })
    }

    pub fn mode(&self) -> LinkMode {
        self.control.borrow().mode
    }

    pub fn set_mode(&self, mode: LinkMode) {
        if let LinkMode::Delay { base_ms, jitter_ms } = mode {
            assert!(base_ms + jitter_ms <= DELAY_MS_MAX, "delay above the limit");
        }
        self.control.send_modify(|c| c.mode = mode);
    }

    /// Closes every open connection now (the senders reconnect).
    pub fn reset(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// Points the link at a new address (a node restarted elsewhere); open connections reset.
    pub fn retarget(&self, target: String) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
        self.reset();
    }

    pub fn bytes_passed(&self) -> u64 {
        self.counters.bytes_passed.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    control: watch::Receiver<Control>,
    counters: Arc<LinkCounters>,
    target: Arc<Mutex<String>>,
    seed: u64,
) {
    let mut connection_number: u64 = 0;
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connection_number += 1;
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let current = *control.borrow();
        let open = counters.connections_open.load(Ordering::Relaxed);
        if current.mode == LinkMode::Refuse || open >= CONNECTIONS_PER_LINK_MAX {
            counters.connections_reset.fetch_add(1, Ordering::Relaxed);
            drop(inbound);
            continue;
        }
        let address = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let control = control.clone();
        let counters = Arc::clone(&counters);
        let rng_seed = seed ^ connection_number.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tokio::spawn(async move {
            counters.connections_open.fetch_add(1, Ordering::Relaxed);
            let _ = connection(inbound, address, control, &counters, rng_seed).await;
            counters.connections_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    inbound: TcpStream,
    address: String,
    control: watch::Receiver<Control>,
    counters: &LinkCounters,
    rng_seed: u64,
) -> std::io::Result<()> {
    let connect = TcpStream::connect(&address);
    let outbound = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let generation = control.borrow().generation;
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let forward = pump(
        in_read,
        out_write,
        control.clone(),
        generation,
        counters,
        rng_seed,
        true,
    );
    let backward = pump(
        out_read,
        in_write,
        control,
        generation,
        counters,
        rng_seed ^ 1,
        false,
    );
    // Either direction ending (close, reset, refuse) ends the connection.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
    }
    Ok(())
}

/// Follows length-delimited frame boundaries in a byte stream and, while asked to, cuts out
/// whole frames so they can be written twice.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    /// Length-prefix bytes of the frame being read (fewer than `FRAME_HEADER_BYTES`).
    header: Vec<u8>,
    /// Payload bytes still to come of the current frame (0: at a header).
    payload_left: usize,
    /// Frames whose header has been seen.
    frames_started: u64,
    /// The stream does not look length-delimited: stop framing.
    abandoned: bool,
    /// The current frame, header included, while it is being collected for duplication.
    collecting: Option<Vec<u8>>,
}

/// A piece of the stream ready to write: bytes to write once, or a whole frame to write twice.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Once(Vec<u8>),
    Twice(Vec<u8>),
}

impl FrameSplitter {
    /// Feeds `bytes`; returns what to write, in order. `duplicate` asks for whole frames
    /// (other than the first, the handshake) to come out as `Piece::Twice`; a frame that
    /// began before `duplicate` was set is passed once.
    pub fn feed(&mut self, mut bytes: &[u8], duplicate: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut once: Vec<u8> = Vec::new();
        let pieces_max = bytes.len() + 1;
        for _ in 0..pieces_max {
            if bytes.is_empty() {
                break;
            }
            if self.abandoned {
                once.extend_from_slice(bytes);
                break;
            }
            if self.payload_left == 0 {
                // At (or inside) a length prefix.
                let need = FRAME_HEADER_BYTES - self.header.len();
                let take = need.min(bytes.len());
                if self.header.is_empty() {
                    // A frame starts here: collect it when duplicating (never the handshake).
                    if duplicate && self.frames_started >= 1 {
                        if !once.is_empty() {
                            out.push(Piece::Once(std::mem::take(&mut once)));
                        }
                        self.collecting = Some(Vec::new());
                    }
                    self.frames_started += 1;
                }
                self.header.extend_from_slice(&bytes[..take]);
                match self.collecting.as_mut() {
                    Some(frame) => frame.extend_from_slice(&bytes[..take]),
                    None => once.extend_from_slice(&bytes[..take]),
                }
                bytes = &bytes[take..];
                if self.header.len() == FRAME_HEADER_BYTES {
                    let length =
                        u32::from_be_bytes(self.header[..].try_into().expect("four header bytes"))
                            as usize;
                    self.header.clear();
                    if length > DUPLICATE_FRAME_BYTES_MAX {
                        // Not our framing (or a huge frame): pass everything from now on.
                        self.abandoned = true;
                        if let Some(frame) = self.collecting.take() {
                            once.extend_from_slice(&frame);
                        }
                        continue;
                    }
                    self.payload_left = length;
                    if length == 0 {
                        self.finish_frame(&mut out, &mut once);
                    }
                }
            } else {
                let take = self.payload_left.min(bytes.len());
                match self.collecting.as_mut() {
                    Some(frame) => frame.extend_from_slice(&bytes[..take]),
                    None => once.extend_from_slice(&bytes[..take]),
                }
                self.payload_left -= take;
                bytes = &bytes[take..];
                if self.payload_left == 0 {
                    self.finish_frame(&mut out, &mut once);
                }
            }
        }
        assert!(bytes.is_empty() || self.abandoned, "every byte consumed");
        if !once.is_empty() {
            out.push(Piece::Once(once));
        }
        out
    }

    fn finish_frame(&mut self, out: &mut Vec<Piece>, once: &mut Vec<u8>) {
        assert_eq!(self.payload_left, 0);
        if let Some(frame) = self.collecting.take() {
            if !once.is_empty() {
                out.push(Piece::Once(std::mem::take(once)));
            }
            out.push(Piece::Twice(frame));
        }
    }
}

/// Copies `reader` to `writer` under the link's mode until EOF, an error, a reset or Refuse.
/// `framed`: this direction carries length-delimited frames that `Duplicate` may repeat.
async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
    generation: u64,
    counters: &LinkCounters,
    rng_seed: u64,
    framed: bool,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
    let mut splitter = FrameSplitter::default();
    loop {
        let read = tokio::select! {
            read = reader.read(&mut buffer) => read,
            changed = control.changed() => {
                if changed.is_err() { return; }
                let now = *control.borrow();
                if now.generation != generation || now.mode == LinkMode::Refuse {
                    counters.connections_reset.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                continue;
            }
        };
        let count = match read {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        assert!(count <= buffer.len());
        let now = *control.borrow();
        if now.generation != generation || now.mode == LinkMode::Refuse {
            counters.connections_reset.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if now.mode.blocks() {
            counters
                .bytes_dropped
                .fetch_add(count as u64, Ordering::Relaxed);
            if framed {
                // Keep following the sender's frame boundaries through the discarded bytes.
                drop(splitter.feed(&buffer[..count], false));
            }
            continue;
        }
        if let LinkMode::Delay { base_ms, jitter_ms } = now.mode {
            let low = base_ms.saturating_sub(jitter_ms);
            let high = base_ms + jitter_ms;
            let delay_ms = rng.gen_range(low..=high);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if !framed {
            if writer.write_all(&buffer[..count]).await.is_err() {
                return;
            }
            counters
                .bytes_passed
                .fetch_add(count as u64, Ordering::Relaxed);
            continue;
        }
        let duplicate = now.mode == LinkMode::Duplicate;
        for piece in splitter.feed(&buffer[..count], duplicate) {
            let (bytes, times) = match &piece {
                Piece::Once(bytes) => (bytes, 1),
                Piece::Twice(bytes) => (bytes, 2),
            };
            for _ in 0..times {
                if writer.write_all(bytes).await.is_err() {
                    return;
                }
            }
            if times == 2 {
                counters.frames_duplicated.fetch_add(1, Ordering::Relaxed);
            }
            counters
                .bytes_passed
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(stream: &mut TcpStream, wait_ms: u64) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut b = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(wait_ms), stream.read_exact(&mut b)).await
        {
            Ok(Ok(_)) => Some(b.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pass_black_hole_refuse_delay() {
        let target = echo_server().await;
        let proxy = LinkProxy::start(1, 2, target, 7).await.unwrap();
        let mut stream = TcpStream::connect(&proxy.listen_addr).await.unwrap();
        assert_eq!(roundtrip(&mut stream, 1000).await, Some(b"ping".to_vec()));
        assert_eq!(proxy.bytes_passed(), 8);

        proxy.set_mode(LinkMode::BlackHole);
        assert_eq!(roundtrip(&mut stream, 200).await, None);
        assert_eq!(proxy.bytes_passed(), 8, "a black hole passes nothing");
        assert_eq!(proxy.counters.bytes_dropped.load(Ordering::Relaxed), 4);

        proxy.set_mode(LinkMode::Pass);
        assert_eq!(roundtrip(&mut stream, 1000).await, Some(b"ping".to_vec()));

        proxy.set_mode(LinkMode::Delay {
            base_ms: 150,
            jitter_ms: 0,
        });
        let started = std::time::Instant::now();
        assert_eq!(roundtrip(&mut stream, 2000).await, Some(b"ping".to_vec()));
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "both ways delayed"
        );

        proxy.set_mode(LinkMode::Refuse);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(roundtrip(&mut stream, 300).await, None, "connection reset");
        let mut fresh = TcpStream::connect(&proxy.listen_addr).await.unwrap();
        assert_eq!(roundtrip(&mut fresh, 300).await, None, "new ones closed");

        proxy.set_mode(LinkMode::Pass);
        let mut again = TcpStream::connect(&proxy.listen_addr).await.unwrap();
        assert_eq!(roundtrip(&mut again, 1000).await, Some(b"ping".to_vec()));
        proxy.reset();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(roundtrip(&mut again, 300).await, None, "reset closes it");
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn splitter_duplicates_whole_frames_after_the_handshake() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b"one"));
        stream.extend(frame(b""));
        stream.extend(frame(b"three"));
        // Fed byte by byte: boundaries survive any chunking.
        let mut splitter = FrameSplitter::default();
        let mut written = Vec::new();
        let mut twice = 0;
        for byte in &stream {
            for piece in splitter.feed(std::slice::from_ref(byte), true) {
                match piece {
                    Piece::Once(b) => written.extend(b),
                    Piece::Twice(b) => {
                        twice += 1;
                        written.extend(&b);
                        written.extend(&b);
                    }
                }
            }
        }
        assert_eq!(twice, 3, "every frame but the handshake");
        let mut expected = frame(b"hello");
        for payload in [&b"one"[..], b"", b"three"] {
            expected.extend(frame(payload));
            expected.extend(frame(payload));
        }
        assert_eq!(written, expected);
    }

    #[test]
    fn splitter_passes_a_frame_begun_before_duplicate_and_unframed_streams() {
        let mut splitter = FrameSplitter::default();
        let first = frame(b"hello");
        assert_eq!(
            splitter.feed(&first, false),
            vec![Piece::Once(first.clone())]
        );
        let second = frame(b"abcdef");
        // Half the frame passes, then duplication is switched on: the rest passes once.
        assert_eq!(
            splitter.feed(&second[..5], false),
            vec![Piece::Once(second[..5].to_vec())]
        );
        let third = frame(b"xyz");
        let mut rest = second[5..].to_vec();
        rest.extend(&third);
        assert_eq!(
            splitter.feed(&rest, true),
            vec![Piece::Once(second[5..].to_vec()), Piece::Twice(third)]
        );
        // A stream whose "length" is absurd is not framed: never duplicated.
        let mut plain = FrameSplitter::default();
        assert_eq!(
            plain.feed(b"ping", true),
            vec![Piece::Once(b"ping".to_vec())]
        );
        assert_eq!(
            plain.feed(b"pingpong", true),
            vec![Piece::Once(b"pingpong".to_vec())]
        );
    }

    #[tokio::test]
    async fn duplicate_mode_repeats_frames_through_the_proxy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1024];
            while let Ok(n) = s.read(&mut b).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        let proxy = LinkProxy::start(1, 2, target, 3).await.unwrap();
        let mut stream = TcpStream::connect(&proxy.listen_addr).await.unwrap();
        stream.write_all(&frame(b"hello")).await.unwrap();
        stream.write_all(&frame(b"a")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set_mode(LinkMode::Duplicate);
        stream.write_all(&frame(b"bb")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut expected = frame(b"hello");
        expected.extend(frame(b"a"));
        expected.extend(frame(b"bb"));
        expected.extend(frame(b"bb"));
        assert_eq!(*received.lock().unwrap(), expected);
        assert_eq!(proxy.counters.frames_duplicated.load(Ordering::Relaxed), 1);
    }
}
