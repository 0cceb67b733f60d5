//! Percentiles that merge exactly: a DDSketch (`sketches-ddsketch`, 1 % relative accuracy) of
//! non-negative values, stored as bytes in the read models. Merging the sketches of sixty
//! minutes gives the sketch of the hour, so any bucket's p99 is the p99 of its values within 1 %,
//! whatever the step a query asks for.
//!
//! The bytes are canonical: two sketches of the same values encode to the same bytes whatever
//! the order the values were added or merged in (the crate's own layout depends on that order),
//! so a rebuilt read model is byte-identical to the one it replaces.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

#[derive(Clone)]
pub struct Sketch(DDSketch);

#[derive(Debug, thiserror::Error)]
#[error("a stored sketch cannot be read: {0}")]
pub struct SketchError(String);

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    pub fn new() -> Self {
        Self(DDSketch::new(Config::defaults()))
    }

    pub fn add(&mut self, value: f64) {
        self.0.add(value);
    }

    pub fn merge(&mut self, other: &Sketch) {
        // Every sketch here has the default configuration, so merging cannot fail.
        let _ = self.0.merge(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }

    /// The value at quantile `q` (0 to 1), `None` when the sketch is empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }

    pub fn sum(&self) -> Option<f64> {
        self.0.sum()
    }

    pub fn min(&self) -> Option<f64> {
        self.0.min()
    }

    pub fn max(&self) -> Option<f64> {
        self.0.max()
    }

    pub fn encode(&self) -> Vec<u8> {
        let raw = postcard::to_allocvec(&self.0).unwrap_or_default();
        match postcard::from_bytes::<Layout>(&raw) {
            Ok(mut layout) => {
                layout.store.trim();
                layout.negative_store.trim();
                postcard::to_allocvec(&layout).unwrap_or(raw)
            }
            Err(_) => raw,
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        postcard::from_bytes::<DDSketch>(bytes)
            .map(Self)
            .map_err(|e| SketchError(e.to_string()))
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .finish()
    }
}

/// `DDSketch`'s serialized fields, in its order (sketches-ddsketch 0.3), to put its stores in
/// one canonical layout. The unit tests below fail if the crate's layout ever changes.
#[derive(Serialize, Deserialize)]
struct Layout {
    config: ConfigLayout,
    store: StoreLayout,
    negative_store: StoreLayout,
    min: f64,
    max: f64,
    sum: f64,
    zero_count: u64,
}

#[derive(Serialize, Deserialize)]
struct ConfigLayout {
    max_num_bins: u32,
    gamma: f64,
    gamma_ln: f64,
    min_value: f64,
    offset: i32,
}

#[derive(Serialize, Deserialize)]
struct StoreLayout {
    bins: Vec<u64>,
    count: u64,
    min_key: i32,
    max_key: i32,
    offset: i32,
    bin_limit: usize,
    is_collapsed: bool,
}

impl StoreLayout {
    /// Keeps exactly the bins from the lowest key seen to the highest, starting at the lowest.
    fn trim(&mut self) {
        if self.count == 0 {
            *self = StoreLayout {
                bins: Vec::new(),
                count: 0,
                min_key: i32::MAX,
                max_key: i32::MIN,
                offset: 0,
                bin_limit: self.bin_limit,
                is_collapsed: self.is_collapsed,
            };
            return;
        }
        if self.is_collapsed {
            return;
        }
        let start = usize::try_from(self.min_key - self.offset).ok();
        let end = usize::try_from(self.max_key - self.offset).ok();
        if let (Some(start), Some(end)) = (start, end) {
            if start <= end && end < self.bins.len() {
                self.bins = self.bins[start..=end].to_vec();
                self.offset = self.min_key;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn of(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        for v in values {
            s.add(*v);
        }
        s
    }

    #[test]
    fn same_values_encode_to_the_same_bytes_in_any_order() {
        let values: Vec<f64> = (0..500).map(|i| f64::from((i * 7919) % 3000)).collect();
        let forward = of(&values);
        let mut backward_values = values.clone();
        backward_values.reverse();
        let backward = of(&backward_values);
        let mut merged = of(&values[250..]);
        merged.merge(&of(&values[..250]));
        let mut merged_twice = Sketch::decode(&of(&values[..100]).encode()).unwrap();
        merged_twice.merge(&Sketch::decode(&of(&values[100..]).encode()).unwrap());
        let bytes = forward.encode();
        assert_eq!(backward.encode(), bytes);
        assert_eq!(merged.encode(), bytes);
        assert_eq!(merged_twice.encode(), bytes);
    }

    #[test]
    fn a_decoded_sketch_answers_as_before_and_keeps_growing() {
        let mut s = of(&[1.0, 2.0, 3.0, 250.0, 1000.0]);
        let mut back = Sketch::decode(&s.encode()).unwrap();
        for q in [0.0, 0.25, 0.5, 0.75, 0.99, 1.0] {
            assert_eq!(back.quantile(q), s.quantile(q));
        }
        assert_eq!(back.count(), 5);
        assert_eq!(back.sum(), Some(1256.0));
        // Values far outside the trimmed range still land in the right place.
        for v in [0.0, 0.5, 90_000.0, 600_000.0] {
            back.add(v);
            s.add(v);
        }
        for q in [0.1, 0.5, 0.9, 1.0] {
            assert_eq!(back.quantile(q), s.quantile(q));
        }
        assert_eq!(back.encode(), s.encode());
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let s = of(&(1..=10_000).map(f64::from).collect::<Vec<_>>());
        let p99 = s.quantile(0.99).unwrap();
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.011, "{p99}");
        assert_eq!(Sketch::new().quantile(0.5), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Sketch::decode(b"not a sketch").is_err());
    }
}
