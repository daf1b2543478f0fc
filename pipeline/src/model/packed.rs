//! Compact ids: Flickr photo ids and NSIDs packed into a `u64` whose integer
//! order is the ids' string order.
//!
//! Photo ids are decimal digits and NSIDs are `<digits>@N<2 digits>`, so both are
//! words over the 12 characters `0`–`9`, `@` and `N`, which sort in that order
//! as bytes. Each character becomes a digit 1–12 of a base-13 number, written
//! from the most significant place and padded with 0 ("end of id") to
//! [`MAX_LEN`] places. A shorter id that is a prefix of a longer one then packs
//! smaller, so comparing two packed ids is comparing the strings byte by byte:
//! `prepare` can sort and look ids up as integers without hashing a string
//! per row, and "id ascending" tie breaks are unchanged.
//!
//! An id that does not fit (another character, or longer than [`MAX_LEN`]:
//! about a million times more than Flickr's photo ids today) is not packed;
//! `score`'s `prepare` then keeps that dictionary as strings, as it did before.

/// The longest id that packs: 13^17 < 2^64 ≤ 13^18.
pub const MAX_LEN: usize = 17;

/// 13^i for i in 0..=MAX_LEN.
const POW13: [u64; MAX_LEN + 1] = {
    let mut p = [1u64; MAX_LEN + 1];
    let mut i = 1;
    while i <= MAX_LEN {
        p[i] = p[i - 1] * 13;
        i += 1;
    }
    p
};

/// The base-13 digit of a character, 1–12 in byte order; 0 when it has none.
#[inline]
const fn digit(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => (b - b'0') as u64 + 1,
        b'@' => 11,
        b'N' => 12,
        _ => 0,
    }
}

/// The character of a digit 1–12.
#[inline]
const fn character(d: u64) -> u8 {
    match d {
        1..=10 => b'0' + (d - 1) as u8,
        11 => b'@',
        _ => b'N',
    }
}

/// Packs an id, or `None` when it does not fit.
#[inline]
pub fn pack(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    if bytes.len() > MAX_LEN {
        return None;
    }
    let mut v = 0u64;
    for &b in bytes {
        let d = digit(b);
        if d == 0 {
            return None;
        }
        v = v * 13 + d;
    }
    Some(v * POW13[MAX_LEN - bytes.len()])
}

/// The id a packed value stands for.
pub fn unpack(v: u64) -> String {
    unpack_into(v, &mut [0; MAX_LEN]).to_string()
}

/// The id a packed value stands for, written into `buf`.
pub fn unpack_into(mut v: u64, buf: &mut [u8; MAX_LEN]) -> &str {
    for slot in buf.iter_mut().rev() {
        *slot = (v % 13) as u8;
        v /= 13;
    }
    let len = buf.iter().position(|&d| d == 0).unwrap_or(MAX_LEN);
    for d in &mut buf[..len] {
        *d = character(u64::from(*d));
    }
    // Digits, `@` and `N` only: always UTF-8.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flickr_ids_round_trip_and_others_do_not_pack() {
        for id in ["", "0", "9", "10", "53123456789", "12345678@N02", "7@N00"] {
            assert_eq!(pack(id).map(unpack).as_deref(), Some(id), "{id}");
        }
        assert_eq!(
            pack("12345678901234567").map(unpack).as_deref(),
            Some("12345678901234567")
        );
        for id in ["123456789012345678", "u1", "12345678@n02", "1 2", "é"] {
            assert_eq!(pack(id), None, "{id}");
        }
    }

    #[test]
    fn the_largest_id_fits() {
        let top = "N".repeat(MAX_LEN);
        assert_eq!(pack(&top), Some(POW13[MAX_LEN] - 1));
        assert_eq!(unpack(POW13[MAX_LEN] - 1), top);
    }

    proptest! {
        /// Integer order is string order, including prefixes ("9" > "10",
        /// "1" < "10", "123@N01" > "1234@N01").
        #[test]
        fn packed_order_is_string_order(
            a in "[0-9@N]{0,17}",
            b in "[0-9@N]{0,17}",
        ) {
            let (Some(pa), Some(pb)) = (pack(&a), pack(&b)) else {
                return Err(TestCaseError::fail("an id over [0-9@N] did not pack"));
            };
            prop_assert_eq!(pa.cmp(&pb), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(unpack(pa), a);
        }
    }
}
