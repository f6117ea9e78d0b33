//! Slice arithmetic for objects cached in fixed-size pieces (`cache.sliceSize`). Slice `i`
//! covers bytes `i*size .. min((i+1)*size, len)`; each is fetched with its own `Range` GET,
//! collapsed and stored under its own key (`key::slice_key`), so a viewer range costs only the
//! slices it covers.

use std::ops::RangeInclusive;

/// How one object of `len` bytes is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicing {
    pub size: u64,
    pub len: u64,
}

impl Slicing {
    /// `size` must be non-zero (config validation guarantees it).
    pub fn new(size: u64, len: u64) -> Slicing {
        Slicing {
            size: size.max(1),
            len,
        }
    }

    pub fn count(&self) -> u64 {
        self.len.div_ceil(self.size)
    }

    /// The slice holding byte `offset`.
    pub fn index_of(&self, offset: u64) -> u64 {
        offset / self.size
    }

    /// Bytes `start..end` of slice `index` in the object.
    pub fn bounds(&self, index: u64) -> (u64, u64) {
        let start = index.saturating_mul(self.size).min(self.len);
        (start, start.saturating_add(self.size).min(self.len))
    }

    /// The slices a byte range `start..end` (non-empty) touches.
    pub fn covering(&self, start: u64, end: u64) -> RangeInclusive<u64> {
        self.index_of(start)..=self.index_of(end.saturating_sub(1).max(start))
    }

    /// The part of `start..end` inside slice `index`, relative to the slice.
    pub fn within(&self, index: u64, start: u64, end: u64) -> (u64, u64) {
        let (s, e) = self.bounds(index);
        (start.clamp(s, e) - s, end.clamp(s, e) - s)
    }
}

/// `Range` header value asking for slice `index` when the object's length is not known yet
/// (the origin clamps the end to the object).
pub fn probe_range(size: u64, index: u64) -> String {
    let start = index.saturating_mul(size);
    format!("bytes={start}-{}", start.saturating_add(size) - 1)
}

/// The first byte a viewer `Range` asks for, when it can be told without the object's length
/// (`bytes=A-` or `bytes=A-B`); suffix and multi ranges start at 0.
pub fn requested_start(range: &[u8]) -> u64 {
    let Ok(s) = std::str::from_utf8(range) else {
        return 0;
    };
    let Some(set) = s.trim().strip_prefix("bytes=") else {
        return 0;
    };
    if set.contains(',') {
        return 0;
    }
    set.split_once('-')
        .and_then(|(a, _)| a.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_object_exactly() {
        let s = Slicing::new(10, 25);
        assert_eq!(s.count(), 3);
        assert_eq!(s.bounds(0), (0, 10));
        assert_eq!(s.bounds(2), (20, 25));
        assert_eq!(s.bounds(3), (25, 25));
        assert_eq!(s.covering(0, 25), 0..=2);
        assert_eq!(s.covering(9, 11), 0..=1);
        assert_eq!(s.covering(10, 20), 1..=1);
        assert_eq!(s.covering(24, 25), 2..=2);
        assert_eq!(s.within(1, 5, 15), (0, 5));
        assert_eq!(s.within(0, 5, 15), (5, 10));
        assert_eq!(s.within(2, 0, 25), (0, 5));
        assert_eq!(Slicing::new(10, 20).count(), 2);
        assert_eq!(Slicing::new(10, 0).count(), 0);
        // Sum of slice lengths is the object, for awkward sizes too.
        for len in [1u64, 9, 10, 11, 99, 100, 101] {
            let s = Slicing::new(10, len);
            let total: u64 = (0..s.count())
                .map(|i| {
                    let (a, b) = s.bounds(i);
                    b - a
                })
                .sum();
            assert_eq!(total, len);
        }
    }

    #[test]
    fn probe_ranges_and_requested_starts() {
        assert_eq!(probe_range(8, 0), "bytes=0-7");
        assert_eq!(probe_range(8, 3), "bytes=24-31");
        assert_eq!(requested_start(b"bytes=734003200-734004223"), 734_003_200);
        assert_eq!(requested_start(b"bytes=5-"), 5);
        assert_eq!(requested_start(b"bytes=-5"), 0);
        assert_eq!(requested_start(b"bytes=0-1,5-6"), 0);
        assert_eq!(requested_start(b"items=5-6"), 0);
        assert_eq!(requested_start(&[0xff]), 0);
    }
}
