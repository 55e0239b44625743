//! The seam between [`Kv`](crate::Kv) and the stores: the [`Backend`] trait and the values that
//! cross it.

use async_trait::async_trait;

use crate::error::KvError;
use crate::policy::{Quotas, Scope};

/// One stored entry, as the WIT `storage-entry` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub namespace: String,
    pub key: String,
    pub value: Vec<u8>,
    /// Strictly increasing per key, never reused (see [`Backend::put`]); never 0.
    pub revision: u64,
}

/// What a `list` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys starting with this (empty = all).
    pub prefix: String,
    /// The `next_cursor` of the previous page; `None` (or empty) starts at the first key.
    pub cursor: Option<String>,
    /// Entries per page; `None` = [`DEFAULT_LIST_LIMIT`](crate::DEFAULT_LIST_LIMIT), clamped to 1 ..=
    /// [`MAX_LIST_LIMIT`](crate::MAX_LIST_LIMIT).
    pub limit: Option<usize>,
}

/// One page of a `list`, in ascending byte order of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass this as [`ListOptions::cursor`] to get the next page; `None` on the last page.
    /// Callers treat it as opaque; it is the last key of this page (pages are keyset-paginated:
    /// stable under concurrent writes, no duplicates, nothing that existed throughout missed).
    pub next_cursor: Option<String>,
}

/// A validated list request, as backends receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Keys must start with this.
    pub prefix: String,
    /// Resume strictly after this key (`None`: start at `prefix`).
    pub after: Option<String>,
    /// Entries wanted; the backend reads one more to learn whether another page exists.
    pub limit: usize,
}

impl Query {
    /// The lower bound of the scan: `(key, inclusive)`.
    pub fn lower_bound(&self) -> (&str, bool) {
        match &self.after {
            Some(after) if after.as_str() >= self.prefix.as_str() => (after, false),
            _ => (&self.prefix, true),
        }
    }
}

/// Collects a page from rows read in key order: stops at the limit and once the page passes
/// [`MAX_PAGE_BYTES`](crate::MAX_PAGE_BYTES), and knows whether another page follows because the
/// reader offers one row past the end.
#[derive(Debug)]
pub(crate) struct PageBuilder {
    limit: usize,
    entries: Vec<Entry>,
    bytes: usize,
    more: bool,
}

impl PageBuilder {
    pub(crate) fn new(limit: usize) -> PageBuilder {
        PageBuilder {
            limit,
            entries: Vec::new(),
            bytes: 0,
            more: false,
        }
    }

    /// Offers the next matching row; `false` once the page is complete: stop reading then.
    pub(crate) fn offer(&mut self, entry: Entry) -> bool {
        if self.entries.len() >= self.limit || (!self.entries.is_empty() && self.bytes >= crate::MAX_PAGE_BYTES) {
            self.more = true;
            return false;
        }
        self.bytes += entry.key.len() + entry.value.len();
        self.entries.push(entry);
        true
    }

    pub(crate) fn finish(self) -> Page {
        let next_cursor = if self.more {
            self.entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Page {
            entries: self.entries,
            next_cursor,
        }
    }
}

/// A store for `storage.kv`. Implementations receive arguments [`Kv`](crate::Kv) has validated
/// and keep every key under its [`Scope`] (tenant id first), so nothing one scope passes can
/// reach another's data. Each write is one transaction: checks, quota accounting and the write
/// commit together or not at all.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A short name for logs and errors (`"redb"`, `"postgres"`).
    fn name(&self) -> &'static str;

    /// The entry at (`scope`, `namespace`, `key`), if any.
    async fn get(&self, scope: &Scope, namespace: &str, key: &str) -> Result<Option<Entry>, KvError>;

    /// Stores `value` under a new revision. With `expected = Some(r)` the write happens only
    /// if the stored revision is `r` (0 = absent), else [`KvError::Conflict`]. Concurrent puts
    /// with the same expectation: exactly one wins.
    async fn put(
        &self,
        scope: &Scope,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
        quotas: &Quotas,
    ) -> Result<Entry, KvError>;

    /// Removes the entry; `Ok(false)` if there was none. `expected` as for [`Backend::put`].
    async fn delete(&self, scope: &Scope, namespace: &str, key: &str, expected: Option<u64>) -> Result<bool, KvError>;

    /// One page of the namespace's entries matching `query`, in ascending byte order of keys.
    async fn list(&self, scope: &Scope, namespace: &str, query: &Query) -> Result<Page, KvError>;

    /// Removes every entry and namespace of `scope` in one transaction and returns how many
    /// entries went; other scopes are untouched. The scope's revision counter stays, so
    /// revisions are never reused (a revision read before the purge never matches a later
    /// entry). A write that commits after the purge is kept. Purging an empty or unknown scope
    /// removes nothing and succeeds, so a purge can be retried.
    async fn purge(&self, scope: &Scope) -> Result<u64, KvError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value_len: usize) -> Entry {
        Entry {
            namespace: "n".into(),
            key: key.into(),
            value: vec![0; value_len],
            revision: 1,
        }
    }

    fn keys(page: &Page) -> Vec<&str> {
        page.entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn pages_stop_at_the_limit_and_know_if_more_follow() {
        let mut b = PageBuilder::new(2);
        assert!(b.offer(entry("a", 1)) && b.offer(entry("b", 1)));
        assert!(!b.offer(entry("c", 1)));
        let page = b.finish();
        assert_eq!((keys(&page), page.next_cursor.as_deref()), (vec!["a", "b"], Some("b")));

        let mut b = PageBuilder::new(2);
        assert!(b.offer(entry("a", 1)) && b.offer(entry("b", 1)));
        let page = b.finish();
        assert_eq!(
            (keys(&page), page.next_cursor.as_deref()),
            (vec!["a", "b"], None),
            "no row past the end: last page"
        );
    }

    #[test]
    fn pages_stop_at_the_byte_cap_but_hold_one_entry() {
        let big = crate::MAX_PAGE_BYTES;
        let mut b = PageBuilder::new(10);
        assert!(b.offer(entry("a", big)));
        assert!(!b.offer(entry("b", 1)));
        let page = b.finish();
        assert_eq!((keys(&page), page.next_cursor.as_deref()), (vec!["a"], Some("a")));
    }

    #[test]
    fn lower_bound_is_the_later_of_prefix_and_cursor() {
        let q = |prefix: &str, after: Option<&str>| Query {
            prefix: prefix.into(),
            after: after.map(Into::into),
            limit: 1,
        };
        assert_eq!(q("", None).lower_bound(), ("", true));
        assert_eq!(q("p/", None).lower_bound(), ("p/", true));
        assert_eq!(q("p/", Some("p/x")).lower_bound(), ("p/x", false));
        assert_eq!(q("p/", Some("a")).lower_bound(), ("p/", true));
        assert_eq!(q("p/", Some("p/")).lower_bound(), ("p/", false));
    }
}
