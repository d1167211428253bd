//! String interning: the repeated strings of cached tasks (nodes, types, object ids,
//! users, status texts) are stored once and referred to by a `u32`.

use std::collections::HashMap;

/// A table of distinct strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Interner {
    /// The id of `s`, adding it if new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// A table of `strings`, each getting its position as id; `None` if one is listed
    /// twice.
    pub(crate) fn from_strings(strings: Vec<Box<str>>) -> Option<Interner> {
        let mut ids = HashMap::with_capacity(strings.len());
        for (id, s) in strings.iter().enumerate() {
            if ids.insert(s.clone(), id as u32).is_some() {
                return None;
            }
        }
        Some(Interner { strings, ids })
    }

    /// Every string, by id.
    pub(crate) fn all(&self) -> &[Box<str>] {
        &self.strings
    }

    /// The id of `s`, if it was interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The string of an id.
    pub(crate) fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    /// For every id, whether its string satisfies `pred` (evaluated once per string).
    pub(crate) fn mask(&self, pred: impl Fn(&str) -> bool) -> Vec<bool> {
        self.strings.iter().map(|s| pred(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_string_gets_the_same_id() {
        let mut i = Interner::default();
        let a = i.intern("vzdump");
        let b = i.intern("qmstart");
        assert_eq!(i.intern("vzdump"), a);
        assert_ne!(a, b);
        assert_eq!(i.get(b), "qmstart");
        assert_eq!(i.lookup("nope"), None);
        assert_eq!(i.mask(|s| s.contains("dump")), vec![true, false]);
    }
}
