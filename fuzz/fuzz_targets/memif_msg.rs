//! memif control messages as a peer sends them: `proto::Msg::decode` of
//! any bytes (the control thread decodes every received datagram with it
//! before the state machine looks at it), then encode/decode round trips.
//!
//! Invariants: nothing panics; only 128-byte datagrams of types 1..=8
//! decode; a decoded message re-encodes to 128 bytes that decode to the
//! same type and the same numbers, with names and reasons NUL-free; a
//! message whose text fields are ASCII and fit their fields (with the NUL)
//! comes back identical; datagrams one byte short or long are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xfwd_pmd::memif::proto::{self, Msg, MSG_SIZE, NAME_SZ, REASON_SZ};

/// The text fields of a message and their field sizes.
fn texts(m: &Msg) -> Vec<(&str, usize)> {
    match m {
        Msg::Hello(h) => vec![(h.name.as_str(), NAME_SZ)],
        Msg::Init(i) => vec![(i.name.as_str(), NAME_SZ)],
        Msg::Connect(n) | Msg::Connected(n) => vec![(n.as_str(), NAME_SZ)],
        Msg::Disconnect { reason, .. } => vec![(reason.as_str(), REASON_SZ)],
        _ => vec![],
    }
}

/// The message with its texts blanked: what must survive any round trip.
fn numbers(m: &Msg) -> Msg {
    let mut m = m.clone();
    match &mut m {
        Msg::Hello(h) => h.name.clear(),
        Msg::Init(i) => i.name.clear(),
        Msg::Connect(n) | Msg::Connected(n) => n.clear(),
        Msg::Disconnect { reason, .. } => reason.clear(),
        _ => {}
    }
    m
}

fn check(data: &[u8]) {
    let r = Msg::decode(data);
    let ty = (data.len() >= 2).then(|| u16::from_le_bytes([data[0], data[1]]));
    assert_eq!(
        r.is_ok(),
        data.len() == MSG_SIZE && matches!(ty, Some(1..=8)),
        "len {} type {ty:?}: {r:?}",
        data.len()
    );
    let Ok(m) = r else { return };
    assert_eq!(m.kind() as u16, ty.unwrap());
    let b = m.encode();
    let again = Msg::decode(&b).expect("an encoded message decodes");
    assert_eq!(again.kind(), m.kind());
    assert_eq!(
        numbers(&again),
        numbers(&m),
        "numbers changed in a round trip"
    );
    for (t, n) in texts(&again) {
        assert!(
            !t.contains('\0'),
            "text {t:?} of a {n}-byte field holds a NUL"
        );
    }
    let exact = texts(&m).iter().all(|(t, n)| t.is_ascii() && t.len() < *n);
    if exact {
        assert_eq!(again, m, "an ASCII message changed in a round trip");
        assert_eq!(
            again.encode(),
            b,
            "encoding is not a function of the message"
        );
    }
    // Lengths the control thread must refuse, built from this input.
    for k in [0, 1, MSG_SIZE - 1, MSG_SIZE + 1] {
        let mut v = b.to_vec();
        v.resize(k, 0);
        assert!(Msg::decode(&v).is_err(), "a {k}-byte datagram decoded");
    }
    let _ = proto::ring_bytes(proto::MAX_LOG2_RING);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Most inputs are not 128 bytes: also look at them as a message padded
    // or cut to the size, so every type's fields are reached.
    let mut m = data.to_vec();
    m.resize(MSG_SIZE, 0);
    check(&m);
});
