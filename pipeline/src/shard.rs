//! Shards: how work is split over processes (AWS Batch array children), the
//! same way in every stage. A user (or a photo) belongs to shard
//! `FNV-1a-64(id) mod N`: a stable hash of the id's bytes, so shards agree
//! across machines, runs and versions, and a user's extract and score shards
//! are the same for the same N.

/// FNV-1a's 64-bit offset basis: the state a hash starts from.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits: hashes `bytes` on from state `h` (start from
/// [`FNV_OFFSET`]). The project's one stable hash: shards, the `explore`
/// sample, plan digests.
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The shard of `id` among `shards` (FNV-1a, 64 bits, of the id's bytes).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let h = fnv1a(FNV_OFFSET, id.as_bytes());
    (h % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_the_fnv1a_hash_and_cover_every_index() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(
            shard_of("a", 1 << 31),
            (0xaf63_dc4c_8601_ec8c_u64 % (1 << 31)) as u32
        );
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[shard_of(&format!("{i}@N0{}", i % 10), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(shard_of("12345678@N01", 1), 0);
    }
}
