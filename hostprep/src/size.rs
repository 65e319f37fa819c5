//! Memory sizes as users write them (`2M`, `1G`, `2048kB`, `1GiB`) and as the kernel names them
//! (`hugepages-2048kB`).

use crate::error::HostError;

/// Parse a size with an optional binary suffix (k, M, G, T; `B`, `iB` accepted); a bare number
/// is bytes.
///
/// # Errors
/// [`HostError::InvalidSize`] for anything else, zero, or overflow.
pub fn parse_size(input: &str) -> Result<u64, HostError> {
    let bad = |why: &str| HostError::InvalidSize {
        input: input.to_string(),
        why: why.to_string(),
    };
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad("expected a number first"));
    }
    let n: u64 = s[..digits_end]
        .parse()
        .map_err(|_| bad("number too large"))?;
    let suffix = s[digits_end..].trim().to_ascii_lowercase();
    let suffix = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad("unknown unit; use k, M, G or T")),
    };
    let v = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("too large"))?;
    if v == 0 {
        return Err(bad("must be greater than zero"));
    }
    Ok(v)
}

/// Format bytes with the largest binary unit that divides them exactly (`2M`, `1G`, `4k`).
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "k")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}")
}

/// Page size in bytes from a sysfs directory name such as `hugepages-2048kB`.
pub fn page_size_from_dir(name: &str) -> Option<u64> {
    let kb: u64 = name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// Sysfs directory name for a page size (`2097152` → `hugepages-2048kB`).
pub fn dir_for_page_size(bytes: u64) -> String {
    format!("hugepages-{}kB", bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings() {
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("2048kB").unwrap(), 2 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("M").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("2X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn formats_and_names_directories() {
        assert_eq!(format_size(2 << 20), "2M");
        assert_eq!(format_size(3 << 30), "3G");
        assert_eq!(format_size(1536 << 10), "1536k");
        assert_eq!(page_size_from_dir("hugepages-1048576kB"), Some(1 << 30));
        assert_eq!(dir_for_page_size(2 << 20), "hugepages-2048kB");
        assert_eq!(page_size_from_dir("nope"), None);
    }
}
