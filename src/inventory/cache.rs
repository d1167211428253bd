//! The resource cache: one entry per remote with its last good list, when that list was
//! filled (the time its reply arrived, never the time it was asked for), and the last
//! fetch's error. A failed fetch keeps the previous list.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use fleetpoll_actors::{ErrorClass, RemoteId, Resource, SourceError, UnixTime};
use serde::Serialize;

/// What the cache holds for one remote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemoteResources {
    /// The remote.
    pub remote: RemoteId,
    /// The last list fetched successfully (empty before the first).
    pub resources: Arc<[Resource]>,
    /// When that list was filled: the time its reply had arrived (Unix seconds).
    pub filled_at: Option<UnixTime>,
    /// When the last fetch started.
    pub last_attempt: Option<UnixTime>,
    /// The last fetch's error, while the fetches after it have not succeeded.
    pub last_error: Option<String>,
    /// That error's class.
    pub last_error_class: Option<ErrorClass>,
}

impl RemoteResources {
    fn empty(remote: RemoteId) -> Self {
        Self {
            remote,
            resources: Arc::from(Vec::new()),
            filled_at: None,
            last_attempt: None,
            last_error: None,
            last_error_class: None,
        }
    }

    /// The resource with this entity id (`qemu/100`).
    pub fn find(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }
}

/// Every remote's resource list. Only the remotes the inventory job was last given are
/// kept: a fetch that ends after its remote was removed changes nothing.
#[derive(Debug, Default)]
pub struct ResourceCache {
    entries: RwLock<BTreeMap<RemoteId, RemoteResources>>,
}

impl ResourceCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<RemoteId, RemoteResources>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<RemoteId, RemoteResources>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// One remote's entry.
    pub fn get(&self, remote: &RemoteId) -> Option<RemoteResources> {
        self.read().get(remote).cloned()
    }

    /// Every entry, by remote id.
    pub fn all(&self) -> Vec<RemoteResources> {
        self.read().values().cloned().collect()
    }

    /// Keeps exactly these remotes: new ones get an empty entry, others are dropped.
    /// Returns the new ones.
    pub(crate) fn track(&self, remotes: &[RemoteId]) -> Vec<RemoteId> {
        let mut entries = self.write();
        entries.retain(|id, _| remotes.contains(id));
        let mut added = Vec::new();
        for id in remotes {
            if !entries.contains_key(id) {
                entries.insert(id.clone(), RemoteResources::empty(id.clone()));
                added.push(id.clone());
            }
        }
        added
    }

    /// A fetch of `remote` starts at `at`.
    pub(crate) fn started(&self, remote: &RemoteId, at: UnixTime) {
        if let Some(e) = self.write().get_mut(remote) {
            e.last_attempt = Some(at);
        }
    }

    /// The list of `remote` arrived at `at`: it replaces the previous one.
    pub(crate) fn fill(&self, remote: &RemoteId, resources: Vec<Resource>, at: UnixTime) {
        if let Some(e) = self.write().get_mut(remote) {
            e.resources = resources.into();
            e.filled_at = Some(at);
            e.last_error = None;
            e.last_error_class = None;
        }
    }

    /// The fetch of `remote` failed: the previous list stays, the error is kept.
    pub(crate) fn fail(&self, remote: &RemoteId, err: &SourceError) {
        if let Some(e) = self.write().get_mut(remote) {
            e.last_error = Some(err.to_string());
            e.last_error_class = Some(err.class);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fetch_keeps_the_list_and_a_fill_clears_the_error() {
        let cache = ResourceCache::default();
        let r = RemoteId::new("pve-1");
        assert_eq!(cache.track(std::slice::from_ref(&r)), vec![r.clone()]);
        cache.started(&r, 100);
        cache.fill(&r, vec![Resource::new("qemu/100", "qemu")], 103);
        cache.started(&r, 200);
        cache.fail(
            &r,
            &SourceError::new(ErrorClass::BadReply, "remote pve-1: broken"),
        );
        let e = cache.get(&r).unwrap();
        assert_eq!(
            (e.resources.len(), e.filled_at, e.last_attempt),
            (1, Some(103), Some(200))
        );
        assert_eq!(e.last_error_class, Some(ErrorClass::BadReply));
        assert!(e.find("qemu/100").is_some());
        cache.fill(&r, Vec::new(), 300);
        let e = cache.get(&r).unwrap();
        assert_eq!(
            (e.resources.len(), e.filled_at, e.last_error),
            (0, Some(300), None)
        );
    }

    #[test]
    fn removed_remotes_are_dropped_and_late_fetches_ignored() {
        let cache = ResourceCache::default();
        let (a, b) = (RemoteId::new("a"), RemoteId::new("b"));
        cache.track(&[a.clone(), b.clone()]);
        assert_eq!(
            cache.track(std::slice::from_ref(&a)),
            Vec::<RemoteId>::new()
        );
        cache.fill(&b, vec![Resource::new("node/n", "node")], 5);
        assert_eq!(cache.get(&b), None);
        assert_eq!(cache.all().len(), 1);
    }
}
