//! Frame-size mixes for the generator (`--tx-mix`, `txonly.mix`): the
//! simple IMIX or a weighted list of sizes, turned into a fixed schedule the
//! generator walks one frame at a time (no division or allocation per
//! packet; the same sequence every run).

/// The classic "simple IMIX": 7 × 64, 4 × 594, 1 × 1518 B frames counting
/// the FCS (IP packets of 46, 576 and 1500 B). xfwd's sizes, like
/// testpmd's `--txpkts`, do not count the FCS: 60, 590 and 1514 B, which is
/// also TRex's `stl/imix.py` (pps 28:16:4).
pub const SIMPLE_IMIX: [(usize, u32); 3] = [(60, 7), (590, 4), (1514, 1)];

/// At most this many sizes in a mix.
pub const MAX_SIZES: usize = 16;
/// At most this many frames in one cycle of the schedule (sum of weights).
pub const MAX_CYCLE: u32 = 4096;

/// One size of a mix and its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    /// Frame length without FCS.
    pub len: usize,
    /// Frames of this size per cycle.
    pub weight: u32,
}

/// Parse `imix`, or `LEN[:WEIGHT],...` (weight 1 when left out), e.g.
/// `64:7,570:4,1518:1`. Lengths are checked against `min..=max`.
///
/// # Errors
/// What is wrong, naming the piece.
pub fn parse(s: &str, min: usize, max: usize) -> Result<Vec<Share>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("imix") {
        return Ok(SIMPLE_IMIX
            .iter()
            .map(|&(len, weight)| Share { len, weight })
            .collect());
    }
    let mut out: Vec<Share> = Vec::new();
    for part in t.split(',') {
        let p = part.trim();
        let (l, w) = p.split_once(':').unwrap_or((p, "1"));
        let len: usize = l
            .trim()
            .parse()
            .map_err(|_| format!("{p:?}: the length must be a number of bytes"))?;
        let weight: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("{p:?}: the weight must be a whole number"))?;
        if !(min..=max).contains(&len) {
            return Err(format!("{p:?}: the length must be {min} ..= {max} bytes"));
        }
        if weight == 0 {
            return Err(format!("{p:?}: the weight must be at least 1"));
        }
        match out.iter_mut().find(|x| x.len == len) {
            Some(x) => x.weight = x.weight.saturating_add(weight),
            None => out.push(Share { len, weight }),
        }
    }
    if out.len() > MAX_SIZES {
        return Err(format!("{} sizes: at most {MAX_SIZES}", out.len()));
    }
    let total: u64 = out.iter().map(|x| u64::from(x.weight)).sum();
    if total > u64::from(MAX_CYCLE) {
        return Err(format!(
            "the weights add up to {total}: at most {MAX_CYCLE} frames per cycle"
        ));
    }
    Ok(out)
}

/// Mean frame length of the mix (bytes without FCS).
pub fn mean_len(mix: &[Share]) -> f64 {
    let n: f64 = mix.iter().map(|x| f64::from(x.weight)).sum();
    mix.iter()
        .map(|x| x.len as f64 * f64::from(x.weight))
        .sum::<f64>()
        / n.max(1.0)
}

/// One cycle of the schedule: indexes into `mix`, each `weight` times,
/// spread as evenly as possible (smooth weighted round robin: small frames
/// are not sent in one long run before the big ones).
pub fn schedule(mix: &[Share]) -> Vec<u16> {
    let total: i64 = mix.iter().map(|x| i64::from(x.weight)).sum();
    let mut current = vec![0i64; mix.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, x) in current.iter_mut().zip(mix) {
            *c += i64::from(x.weight);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))
            .expect("a mix has at least one size");
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// Display form: `60:7,590:4,1514:1`.
pub fn describe(mix: &[Share]) -> String {
    mix.iter()
        .map(|x| format!("{}:{}", x.len, x.weight))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imix_and_lists_parse() {
        let m = parse("IMIX", 60, 9600).unwrap();
        assert_eq!(describe(&m), "60:7,590:4,1514:1");
        assert!((mean_len(&m) - (7.0 * 60.0 + 4.0 * 590.0 + 1514.0) / 12.0).abs() < 1e-9);
        let m = parse(" 64:7, 570:4 ,1518 ", 60, 9600).unwrap();
        assert_eq!(describe(&m), "64:7,570:4,1518:1");
        // A size named twice adds up.
        assert_eq!(describe(&parse("64:1,64:2", 60, 9600).unwrap()), "64:3");
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        let e = |s: &str| parse(s, 60, 2048).unwrap_err();
        assert!(e("59:1").contains("60 ..= 2048"), "{}", e("59:1"));
        assert!(e("4000").contains("60 ..= 2048"));
        assert!(e("64:0").contains("at least 1"));
        assert!(e("64:x").contains("whole number"));
        assert!(e("big:1").contains("number of bytes"));
        assert!(e("").contains("number of bytes"));
        assert!(e("64:5000").contains("at most 4096"));
        let many: Vec<String> = (60..77).map(|l| l.to_string()).collect();
        assert!(e(&many.join(",")).contains("at most 16"));
    }

    #[test]
    fn the_schedule_has_every_share_exactly_and_spreads_them() {
        let m = parse("imix", 60, 9600).unwrap();
        let s = schedule(&m);
        assert_eq!(s.len(), 12);
        for (i, x) in m.iter().enumerate() {
            assert_eq!(
                s.iter().filter(|&&k| k as usize == i).count(),
                x.weight as usize
            );
        }
        // Never more than two small frames in a row between bigger ones
        // (7 of 12: a run of 7 would be a burst of minimum-size frames).
        let mut run = 0;
        for &k in s.iter().chain(s.iter()) {
            run = if k == 0 { run + 1 } else { 0 };
            assert!(run <= 2, "{s:?}");
        }
        // Same schedule every time.
        assert_eq!(s, schedule(&m));
        assert_eq!(schedule(&[Share { len: 64, weight: 1 }]), vec![0]);
    }
}
