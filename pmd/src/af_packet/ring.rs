//! The mapped TPACKET_V3 rings of one packet socket.
//!
//! RX ([`RxRing`]): the ring is `block_nr` blocks; the kernel fills a block
//! with variable-sized frames and hands it over by setting `block_status` to
//! `TP_STATUS_USER` (when full, or `retire_blk_tov` ms after its first
//! frame). User space walks the block's frames (`num_pkts`, starting at
//! `offset_to_first_pkt`, each `tpacket3_hdr` linking to the next with
//! `tp_next_offset`) and gives the whole block back with `TP_STATUS_KERNEL`.
//!
//! TX ([`TxRing`]): fixed-size frames laid out `frames_per_block` to a block;
//! user space writes the frame at offset 48 (`TPACKET3_HDRLEN - sizeof
//! sockaddr_ll`), sets `tp_len` and marks it `TP_STATUS_SEND_REQUEST`; a
//! `sendto` kick makes the kernel send every marked frame in ring order; the
//! status goes back to `TP_STATUS_AVAILABLE` once the skb is freed. The
//! kernel walks the ring from its own head, which stays in step with ours
//! because frames are filled strictly in order.
//!
//! Layouts (`<linux/if_packet.h>`): `tpacket_block_desc` = version(0),
//! offset_to_priv(4), block_status(8), num_pkts(12), offset_to_first_pkt(16),
//! blk_len(20), …, 48 bytes; `tpacket3_hdr` = next_offset(0), sec(4),
//! nsec(8), snaplen(12), len(16), status(20), mac(24, u16), net(26, u16),
//! rxhash(28), vlan_tci(32), vlan_tpid(36, u16), …, 48 bytes, followed by a
//! `sockaddr_ll` whose `sll_pkttype` is at byte 10.

use super::socket::TpacketReq3;
use crate::sys::Shared;
use std::sync::atomic::Ordering;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;
const PACKET_OUTGOING: u8 = 4;

const BLK_STATUS: usize = 8;
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST: usize = 16;
const BLK_HDR_LEN: usize = 48;

const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
const H_SLL_PKTTYPE: usize = 48 + 10;

/// Where TX frame data starts (`TPACKET3_HDRLEN - sizeof(sockaddr_ll)`).
pub const TX_DATA_OFF: usize = 48;
/// Bytes before the frame data in an RX block (block header + the frame
/// header, sockaddr_ll and alignment before a 14-byte MAC header).
pub const RX_OVERHEAD: usize = BLK_HDR_LEN + 82;

/// The captured bytes of a received frame, in a block user space owns
/// (copied out, never borrowed: the memory is shared with the kernel).
#[derive(Debug, Clone, Copy)]
pub struct FrameData<'a> {
    mem: &'a Shared,
    off: usize,
    len: usize,
}

impl FrameData<'_> {
    /// Bytes captured.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty capture.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy bytes `at..at + dst.len()` of the frame into `dst`.
    ///
    /// # Panics
    /// When the range is beyond the frame.
    #[inline]
    pub fn copy_to(&self, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.len, "copy beyond the captured frame");
        self.mem.copy_out(self.off + at, dst);
    }

    /// The bytes as a vector (tests and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.copy_to(0, &mut v);
        v
    }
}

/// One received frame, borrowed from a block user space owns.
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The bytes captured (starting at the MAC header).
    pub data: FrameData<'a>,
    /// The frame's length on the wire (more than `data.len()` when truncated).
    pub wire_len: u32,
    /// A VLAN tag the device stripped: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
    /// A frame this host sent (seen only without `PACKET_IGNORE_OUTGOING`).
    pub outgoing: bool,
}

/// What went wrong in a block the kernel handed over (never expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadBlock;

/// The V3 RX ring: a cursor over blocks.
#[derive(Debug)]
pub struct RxRing {
    mem: Shared,
    block_size: usize,
    block_nr: usize,
    cur: usize,
    left: u32,
    off: usize,
}

impl RxRing {
    /// The RX ring at the start of `map`, laid out by `req`.
    ///
    /// # Panics
    /// When `map` is shorter than the ring (a caller bug).
    pub fn new(map: Shared, req: &TpacketReq3) -> RxRing {
        assert!(map.len() >= req.bytes(), "mapping shorter than the RX ring");
        RxRing {
            mem: map.sub(0, req.bytes()).expect("checked"),
            block_size: req.block_size as usize,
            block_nr: req.block_nr as usize,
            cur: 0,
            left: 0,
            off: 0,
        }
    }

    /// Offset of the open block (cur < block_nr: inside the ring).
    #[inline]
    fn block(&self) -> usize {
        self.cur * self.block_size
    }

    /// Frames left in the open block; opens the next block when the kernel
    /// has handed it over. 0: nothing to read now.
    ///
    /// # Errors
    /// [`BadBlock`] when the block header points outside the block (the
    /// block is given back).
    #[inline]
    pub fn ready(&mut self) -> Result<u32, BadBlock> {
        if self.left > 0 {
            return Ok(self.left);
        }
        let b = self.block();
        // Taking the block: its status word with Acquire before its contents.
        let status = self.mem.load_u32(b + BLK_STATUS, Ordering::Acquire);
        if status & TP_STATUS_USER == 0 {
            return Ok(0);
        }
        // The block is ours; the header fields lie in its first 48 bytes.
        let num = self.mem.read::<u32>(b + BLK_NUM_PKTS);
        let first = self.mem.read::<u32>(b + BLK_FIRST) as usize;
        if num == 0 || first < BLK_HDR_LEN || first >= self.block_size {
            self.release();
            return if num == 0 { Ok(0) } else { Err(BadBlock) };
        }
        self.left = num;
        self.off = first;
        Ok(num)
    }

    /// Blocks walked so far are counted by the caller; this gives the open
    /// block back to the kernel and moves to the next.
    fn release(&mut self) {
        let b = self.block();
        // Giving the block back: Release after our reads of it.
        self.mem
            .store_u32(b + BLK_STATUS, TP_STATUS_KERNEL, Ordering::Release);
        self.cur = (self.cur + 1) % self.block_nr;
        self.left = 0;
        self.off = 0;
    }

    /// The current frame of the open block, then step past it (giving the
    /// block back after its last frame). Returns `Err(BadBlock)` for a frame
    /// header pointing outside the block (the rest of the block is given back).
    ///
    /// # Panics
    /// When called without a frame left ([`RxRing::ready`] returned 0).
    #[inline]
    pub fn next_frame<R>(&mut self, f: impl FnOnce(RxFrame<'_>) -> R) -> Result<R, BadBlock> {
        assert!(self.left > 0, "next_frame without a ready frame");
        let bs = self.block_size;
        if self.off + 48 + 12 > bs {
            self.release();
            return Err(BadBlock);
        }
        // off + 60 <= block_size: the header and the sockaddr_ll byte lie in
        // the block we own.
        let h = self.block() + self.off;
        let m = &self.mem;
        let next = m.read::<u32>(h + H_NEXT) as usize;
        let snap = m.read::<u32>(h + H_SNAPLEN) as usize;
        let len = m.read::<u32>(h + H_LEN);
        let status = m.read::<u32>(h + H_STATUS);
        let mac = m.read::<u16>(h + H_MAC) as usize;
        let tci = m.read::<u32>(h + H_VLAN_TCI);
        let tpid = m.read::<u16>(h + H_VLAN_TPID);
        let pkttype = m.read::<u8>(h + H_SLL_PKTTYPE);
        if self.off + mac + snap > bs {
            self.release();
            return Err(BadBlock);
        }
        // In bounds of the block (checked above), which the kernel does not
        // touch until we release it.
        let data = FrameData {
            mem: &self.mem,
            off: h + mac,
            len: snap,
        };
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                tpid
            } else {
                0x8100
            };
            (tpid, tci as u16)
        });
        let r = f(RxFrame {
            data,
            wire_len: len,
            vlan,
            outgoing: pkttype == PACKET_OUTGOING,
        });
        self.left -= 1;
        if self.left == 0 {
            self.release();
        } else if next == 0 || self.off + next >= bs {
            self.release();
            return Err(BadBlock);
        } else {
            self.off += next;
        }
        Ok(r)
    }

    /// Frames the kernel handed over that were never read (for the leftover
    /// count when the queue goes away); gives those blocks back.
    pub fn drain_count(&mut self) -> u64 {
        let mut n = 0u64;
        for _ in 0..=self.block_nr {
            match self.ready() {
                Ok(0) => break,
                Ok(k) => {
                    n += u64::from(k);
                    self.release();
                }
                Err(BadBlock) => {}
            }
        }
        n
    }
}

/// What [`TxRing::reclaim`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    /// Frames the kernel sent.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames the kernel refused or that were revoked.
    pub failed: u64,
}

/// The V3 TX ring: frames filled in order from `head`, completed in order
/// from `tail`.
#[derive(Debug)]
pub struct TxRing {
    mem: Shared,
    block_size: usize,
    frames_per_block: usize,
    frame_size: usize,
    frame_nr: usize,
    head: usize,
    tail: usize,
    pending: usize,
    revoked: Vec<bool>,
}

impl TxRing {
    /// The TX ring at byte `offset` of `map` (after the RX ring), laid out by `req`.
    ///
    /// # Panics
    /// When `map` is too short (a caller bug).
    pub fn new(map: Shared, offset: usize, req: &TpacketReq3) -> TxRing {
        assert!(
            map.len() >= offset + req.bytes(),
            "mapping shorter than the TX ring"
        );
        TxRing {
            mem: map.sub(offset, req.bytes()).expect("checked"),
            block_size: req.block_size as usize,
            frames_per_block: (req.block_size / req.frame_size) as usize,
            frame_size: req.frame_size as usize,
            frame_nr: req.frame_nr as usize,
            head: 0,
            tail: 0,
            pending: 0,
            revoked: vec![false; req.frame_nr as usize],
        }
    }

    /// Largest frame a slot holds.
    pub fn max_len(&self) -> usize {
        self.frame_size - TX_DATA_OFF
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        self.frame_nr - self.pending
    }

    /// Slots handed to the kernel and not yet completed.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Offset of slot `i` (i < frame_nr = block_nr * frames_per_block:
    /// inside the TX ring).
    #[inline]
    fn frame(&self, i: usize) -> usize {
        let (b, k) = (i / self.frames_per_block, i % self.frames_per_block);
        b * self.block_size + k * self.frame_size
    }

    #[inline]
    fn status(&self, i: usize) -> u32 {
        self.mem
            .load_u32(self.frame(i) + H_STATUS, Ordering::Acquire)
    }

    /// Write one frame of `len` bytes made of `segs` into the next slot and
    /// mark it for sending. Returns false (the slot stays free) when the
    /// segments do not add up to `len`.
    ///
    /// # Panics
    /// Without room, or when `len` exceeds [`TxRing::max_len`] (caller bugs).
    #[inline]
    pub fn push<'a>(&mut self, len: usize, segs: impl Iterator<Item = &'a [u8]>) -> bool {
        assert!(self.room() > 0 && len <= self.max_len());
        let f = self.frame(self.head);
        let mut at = 0usize;
        for s in segs {
            if at + s.len() > len {
                return false;
            }
            // The slot is ours (completed or never used: pending < frame_nr),
            // and TX_DATA_OFF + at + s.len() <= TX_DATA_OFF + len <= frame_size.
            self.mem.copy_in(f + TX_DATA_OFF + at, s);
            at += s.len();
        }
        if at != len {
            return false;
        }
        // Header words of the slot we own; giving it away: the Release store
        // of the status publishes the data and length before the kernel looks.
        self.mem.write::<u32>(f + H_NEXT, 0);
        self.mem.write::<u32>(f + H_LEN, len as u32);
        self.mem.write::<u32>(f + H_SNAPLEN, len as u32);
        self.mem
            .store_u32(f + H_STATUS, TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (self.head + 1) % self.frame_nr;
        self.pending += 1;
        true
    }

    /// Take back, in order, the slots the kernel is done with.
    #[inline]
    pub fn reclaim(&mut self) -> Reclaimed {
        let mut r = Reclaimed::default();
        while self.pending > 0 {
            let i = self.tail;
            let st = self.status(i);
            if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                break;
            }
            if self.revoked[i] || st & TP_STATUS_WRONG_FORMAT != 0 {
                self.revoked[i] = false;
                r.failed += 1;
            } else {
                // The slot is completed, so ours; tp_len is in its header.
                r.bytes += u64::from(self.mem.read::<u32>(self.frame(i) + H_LEN));
                r.sent += 1;
            }
            // A later kernel status write on a completed slot must not look
            // like a fresh send request to the next user.
            self.mem
                .store_u32(self.frame(i) + H_STATUS, 0, Ordering::Relaxed);
            self.tail = (self.tail + 1) % self.frame_nr;
            self.pending -= 1;
        }
        r
    }

    /// Slots still marked for sending that the kernel never took.
    pub fn unsent(&self) -> usize {
        (0..self.pending)
            .filter(|k| self.status((self.tail + k) % self.frame_nr) & TP_STATUS_SEND_REQUEST != 0)
            .count()
    }

    /// Withdraw every slot the kernel has not taken (after the device went
    /// away: the socket will never send again); they complete as failed.
    /// Only valid between kicks (no `sendto` running on this socket).
    pub fn revoke_unsent(&mut self) -> usize {
        let mut n = 0;
        for k in 0..self.pending {
            let i = (self.tail + k) % self.frame_nr;
            if self.status(i) & TP_STATUS_SEND_REQUEST != 0 {
                self.revoked[i] = true;
                // No sendto runs on this socket now, so the kernel will not
                // read this slot again before we refill it.
                self.mem
                    .store_u32(self.frame(i) + H_STATUS, 0, Ordering::Release);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: u32 = 4096;

    fn req(block_nr: u32, frame_size: u32) -> TpacketReq3 {
        TpacketReq3 {
            block_size: BS,
            block_nr,
            frame_size,
            frame_nr: block_nr * (BS / frame_size),
            ..Default::default()
        }
    }

    use crate::sys::{Mapping, Plain};

    fn anon(len: usize) -> Shared {
        Shared::from_mapping(Mapping::anon(len).unwrap())
    }

    fn put<T: Plain>(map: &Shared, off: usize, v: T) {
        map.write(off, v)
    }

    fn get<T: Plain>(map: &Shared, off: usize) -> T {
        map.read(off)
    }

    /// Lay out block `b` as the kernel would: frames of the given payloads.
    fn fill_block(map: &Shared, b: usize, frames: &[(&[u8], u32)]) {
        let base = b * BS as usize;
        let mut off = BLK_HDR_LEN;
        put::<u32>(map, base + BLK_NUM_PKTS, frames.len() as u32);
        put::<u32>(map, base + BLK_FIRST, off as u32);
        for (i, (data, status)) in frames.iter().enumerate() {
            let h = base + off;
            let next = (82 + data.len()).next_multiple_of(16);
            let last = i + 1 == frames.len();
            put::<u32>(map, h + H_NEXT, if last { 0 } else { next as u32 });
            put::<u32>(map, h + H_SNAPLEN, data.len() as u32);
            put::<u32>(map, h + H_LEN, data.len() as u32);
            put::<u32>(map, h + H_STATUS, *status);
            put::<u16>(map, h + H_MAC, 82);
            put::<u32>(map, h + H_VLAN_TCI, 7);
            put::<u16>(map, h + H_VLAN_TPID, 0x88a8);
            for (k, byte) in data.iter().enumerate() {
                put::<u8>(map, h + 82 + k, *byte);
            }
            off += next;
        }
        put::<u32>(map, base + BLK_STATUS, TP_STATUS_USER);
    }

    #[test]
    fn rx_walks_blocks_and_gives_them_back() {
        let r = req(2, 2048);
        let map = anon(r.bytes());
        let mut rx = RxRing::new(map.clone(), &r);
        assert_eq!(
            rx.ready(),
            Ok(0),
            "nothing before the kernel hands a block over"
        );
        let vlan = TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        fill_block(&map, 0, &[(b"first", 0), (b"second!", vlan), (b"3", 0)]);
        assert_eq!(rx.ready(), Ok(3));
        let mut seen = Vec::new();
        for _ in 0..3 {
            rx.next_frame(|f| seen.push((f.data.to_vec(), f.vlan)))
                .unwrap();
        }
        assert_eq!(
            seen,
            vec![
                (b"first".to_vec(), None),
                (b"second!".to_vec(), Some((0x88a8, 7))),
                (b"3".to_vec(), None)
            ]
        );
        assert_eq!(
            get::<u32>(&map, BLK_STATUS),
            TP_STATUS_KERNEL,
            "block 0 given back"
        );
        fill_block(&map, 1, &[(b"x", 0)]);
        assert_eq!(rx.ready(), Ok(1), "then block 1");
        fill_block(&map, 0, &[(b"y", 0), (b"z", 0)]);
        assert_eq!(rx.drain_count(), 3, "leftovers counted across the wrap");
        assert_eq!(get::<u32>(&map, BLK_STATUS), TP_STATUS_KERNEL);
    }

    #[test]
    fn rx_refuses_headers_pointing_outside_the_block() {
        let r = req(1, 2048);
        let map = anon(r.bytes());
        let mut rx = RxRing::new(map.clone(), &r);
        fill_block(&map, 0, &[(b"ok", 0)]);
        put::<u32>(&map, BLK_FIRST, BS + 8);
        assert_eq!(rx.ready(), Err(BadBlock));
        assert_eq!(get::<u32>(&map, BLK_STATUS), TP_STATUS_KERNEL, "given back");
        fill_block(&map, 0, &[(b"ok", 0), (b"next", 0)]);
        put::<u32>(&map, BLK_HDR_LEN + H_SNAPLEN, BS);
        assert_eq!(rx.ready(), Ok(2));
        assert_eq!(
            rx.next_frame(|_| ()),
            Err(BadBlock),
            "snaplen beyond the block"
        );
        assert_eq!(get::<u32>(&map, BLK_STATUS), TP_STATUS_KERNEL);
        fill_block(&map, 0, &[(b"ok", 0), (b"next", 0)]);
        put::<u32>(&map, BLK_HDR_LEN + H_NEXT, BS * 2);
        assert_eq!(rx.ready(), Ok(2));
        assert_eq!(
            rx.next_frame(|f| f.data.len()),
            Err(BadBlock),
            "next beyond"
        );
        assert_eq!(rx.ready(), Ok(0));
    }

    #[test]
    fn tx_fills_in_order_and_reclaims_completions() {
        let r = req(2, 1024);
        let map = anon(r.bytes() + 4096);
        let mut tx = TxRing::new(map.clone(), 4096, &r);
        assert_eq!((tx.room(), tx.max_len()), (8, 1024 - 48));
        assert!(tx.push(6, [&b"abc"[..], &b"def"[..]].into_iter()));
        assert!(
            !tx.push(5, [&b"abc"[..], &b"def"[..]].into_iter()),
            "too long"
        );
        assert!(!tx.push(7, [&b"abc"[..]].into_iter()), "too short");
        assert!(tx.push(3, [&b"xyz"[..]].into_iter()));
        assert_eq!((tx.pending(), tx.unsent()), (2, 2));
        let f0 = 4096;
        assert_eq!(get::<u32>(&map, f0 + H_STATUS), TP_STATUS_SEND_REQUEST);
        assert_eq!(get::<u32>(&map, f0 + H_LEN), 6);
        assert_eq!(get::<[u8; 6]>(&map, f0 + TX_DATA_OFF), *b"abcdef");
        // Slot 1 sits right after slot 0 in the block.
        assert_eq!(get::<[u8; 3]>(&map, f0 + 1024 + TX_DATA_OFF), *b"xyz");
        assert_eq!(tx.reclaim(), Reclaimed::default(), "nothing completed yet");
        put::<u32>(&map, f0 + H_STATUS, 0); // the kernel sent slot 0
        let got = tx.reclaim();
        assert_eq!((got.sent, got.bytes, got.failed), (1, 6, 0));
        assert_eq!(tx.revoke_unsent(), 1, "slot 1 was never taken");
        let got = tx.reclaim();
        assert_eq!((got.sent, got.failed), (0, 1));
        assert_eq!(tx.room(), 8);
        // Slots wrap across blocks: the fifth slot is in block 1.
        for _ in 0..6 {
            assert!(tx.push(1, [&b"w"[..]].into_iter()));
        }
        assert_eq!(get::<u8>(&map, f0 + 4096 + 2 * 1024 + TX_DATA_OFF), b'w');
    }
}
