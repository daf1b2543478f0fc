//! A graph's dictionary of ids ([`Ids`]). Ids are packed into integers by
//! [`crate::model::packed`].

use arrow_array::{Array, StringArray};

/// A graph's dictionary: distinct ids, ascending, held as one Arrow string
/// column (one buffer of bytes and one of offsets, about 16 bytes an id
/// against 40 for a `String` each). An id's integer code is its index. The
/// output tables share the buffers instead of copying the ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Ids(StringArray);

impl Ids {
    /// How many ids.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids in code order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.0.len()).map(|i| self.0.value(i))
    }

    /// The code of `id`, by binary search.
    pub fn position(&self, id: &str) -> Option<usize> {
        let (mut low, mut high) = (0, self.0.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.0.value(mid).cmp(id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The column (its buffers are shared, not copied).
    pub fn array(&self) -> StringArray {
        self.0.clone()
    }
}

impl Default for Ids {
    fn default() -> Self {
        Ids(StringArray::from_iter_values(std::iter::empty::<&str>()))
    }
}

impl From<StringArray> for Ids {
    /// The array must hold distinct ids, ascending, without nulls.
    fn from(array: StringArray) -> Self {
        Ids(array)
    }
}

impl<S: AsRef<str>> FromIterator<S> for Ids {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> Self {
        Ids(StringArray::from_iter_values(ids))
    }
}

impl std::ops::Index<usize> for Ids {
    type Output = str;
    fn index(&self, code: usize) -> &str {
        self.0.value(code)
    }
}
