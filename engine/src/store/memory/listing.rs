//! Listing: newest-first pages of tasks and contexts, walked through an ordered index a
//! chunk at a time (the lock is held only to copy one chunk of ids, never all of them),
//! examining at most [`MAX_SCAN`] ids per call; a page that reaches that bound ends early
//! with a cursor to the rest.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bindu_schemas::{ContextSummary, Task};

use super::MemoryStore;
use crate::store::{
    json_size, page_has_room, Access, ListQuery, ListShape, Page, StoreError, TaskFilter,
    TaskListing,
};

/// Most ids one `tasks/list` or `contexts/list` call examines in the memory store; a page
/// that reaches it (a caller whose tasks are sparse among many others') ends early, with a
/// cursor to the rest.
pub const MAX_SCAN: usize = 10_000;

/// Ids copied out of an index per lock hold while listing.
const SCAN_CHUNK: usize = 128;

fn parse_cursor(cursor: Option<&str>) -> Result<u64, StoreError> {
    match cursor {
        None => Ok(u64::MAX),
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| crate::store::invalid_cursor(c)),
    }
}

/// Up to `n` entries of `order` below `before`, newest first.
fn chunk_below(order: &BTreeMap<u64, String>, before: u64, n: usize) -> Vec<(u64, String)> {
    order
        .range(..before)
        .rev()
        .take(n)
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

impl MemoryStore {
    /// Ids the listings of this store have examined so far.
    pub fn ids_examined(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    /// One page, newest first: walks `chunk(before, n)` (up to `n` entries below `before`,
    /// newest first) and keeps what `pick` returns (an item and its size) while the page has
    /// room; examines at most [`MAX_SCAN`] entries.
    fn page<T>(
        &self,
        mut chunk: impl FnMut(u64, usize) -> Vec<(u64, String)>,
        cursor: Option<&str>,
        limit: u32,
        shape: &ListShape,
        mut pick: impl FnMut(&str) -> Option<(T, usize)>,
    ) -> Result<Page<T>, StoreError> {
        let mut before = parse_cursor(cursor)?;
        let limit = limit.max(1) as usize;
        let mut items = Vec::new();
        let mut total = 0usize;
        let mut last = None;
        let mut examined = 0;
        while examined < MAX_SCAN {
            let ids = chunk(before, SCAN_CHUNK.min(MAX_SCAN - examined));
            if ids.is_empty() {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            examined += ids.len();
            self.scanned.fetch_add(ids.len() as u64, Ordering::Relaxed);
            for (k, id) in ids {
                let Some((item, size)) = pick(&id) else {
                    before = k;
                    continue;
                };
                if !page_has_room(items.len(), total, size, limit, shape) {
                    // Another matching item exists: there is a next page.
                    return Ok(Page {
                        items,
                        next_cursor: last.map(|k: u64| k.to_string()),
                    });
                }
                items.push(item);
                total = total.saturating_add(size);
                last = Some(k);
                before = k;
            }
        }
        // Scan budget spent: the rest is behind the last id examined.
        Ok(Page {
            items,
            next_cursor: Some(before.to_string()),
        })
    }

    /// Up to `n` task ids below order `before`, newest first: of `context`'s own index when
    /// the listing names one (its tasks only are examined), else of every task.
    fn task_chunk(&self, context: Option<&str>, before: u64, n: usize) -> Vec<(u64, String)> {
        match context {
            Some(c) => self
                .contexts
                .get(c)
                .map(|ctx| chunk_below(&ctx.tasks, before, n))
                .unwrap_or_default(),
            None => chunk_below(&self.task_index.lock().all, before, n),
        }
    }

    /// `read` of task `id` when the listing of `query` and `filter` holds it for `access`:
    /// the one test the pages and the count share.
    fn listed<T>(
        &self,
        id: &str,
        access: Access<'_>,
        query: &ListQuery,
        filter: &TaskFilter,
        read: impl FnOnce(&Task) -> T,
    ) -> Option<T> {
        let e = self.tasks.get(id)?;
        let listed = access.permits(e.owner.as_deref())
            && query
                .context_id
                .as_deref()
                .is_none_or(|c| c == e.task.context_id)
            && filter.keeps(&e.task);
        listed.then(|| read(&e.task))
    }

    pub(super) fn list_tasks_page(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<Page<Task>, StoreError> {
        let TaskListing {
            query,
            filter,
            shape,
        } = listing;
        let context = query.context_id.as_deref();
        let chunk = |before: u64, n: usize| self.task_chunk(context, before, n);
        self.page(chunk, query.cursor.as_deref(), query.limit, shape, |id| {
            let task = self.listed(id, access, query, filter, |t| shape.apply(t))?;
            let size = if shape.max_bytes.is_some() {
                json_size(&task)
            } else {
                0
            };
            Some((task, size))
        })
    }

    /// The number of tasks every page of the listing holds together: walks the same index
    /// as the pages, a chunk per lock hold, to its end (no [`MAX_SCAN`] bound: a count is
    /// whole).
    pub(super) fn count_matching(&self, access: Access<'_>, listing: &TaskListing) -> u64 {
        let TaskListing { query, filter, .. } = listing;
        let context = query.context_id.as_deref();
        let mut before = u64::MAX;
        let mut count = 0;
        loop {
            let ids = self.task_chunk(context, before, SCAN_CHUNK);
            let Some((last, _)) = ids.last() else {
                return count;
            };
            before = *last;
            count += ids
                .iter()
                .filter(|(_, id)| self.listed(id, access, query, filter, |_| ()).is_some())
                .count() as u64;
        }
    }

    pub(super) fn list_contexts_page(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        self.page(
            |before, n| chunk_below(&self.context_order.lock(), before, n),
            query.cursor.as_deref(),
            query.limit,
            &ListShape::FULL,
            |id| {
                let c = self.contexts.get(id)?;
                if !access.permits(c.owner.as_deref()) {
                    return None;
                }
                let summary = ContextSummary {
                    context_id: id.to_string(),
                    task_count: c.tasks.len() as u64,
                    task_ids: c.tasks.values().cloned().collect(),
                    created_at: c.created_at.clone(),
                    updated_at: c.updated_at.clone(),
                };
                Some((summary, 0))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{conformance, TaskStore};

    #[tokio::test]
    async fn listing_examines_a_page_not_the_store() {
        let store = MemoryStore::default();
        for _ in 0..5000 {
            conformance::submit_new(&store, None).await;
        }
        let before = store.ids_examined();
        let page = store
            .list_tasks(Access::Owner(None), ListQuery::first(10).into())
            .await
            .expect("list");
        assert_eq!(page.items.len(), 10);
        let examined = store.ids_examined() - before;
        assert!(examined <= SCAN_CHUNK as u64, "examined {examined} ids");

        // Filtered on a context: only that context's tasks are examined.
        let s = conformance::submit_new(&store, None).await;
        let before = store.ids_examined();
        let page = store
            .list_tasks(
                Access::Owner(None),
                ListQuery::first(10)
                    .in_context(s.task.context_id.clone())
                    .into(),
            )
            .await
            .expect("list");
        assert_eq!(page.items.len(), 1);
        assert_eq!(store.ids_examined() - before, 1);
    }

    #[tokio::test]
    async fn a_sparse_listing_ends_early_with_a_cursor() {
        let store = MemoryStore::default();
        let mine = conformance::submit_new(&store, Some("me")).await;
        for _ in 0..(MAX_SCAN + 500) {
            conformance::submit_new(&store, Some("someone else")).await;
        }
        let query = |cursor| ListQuery::first(10).after(cursor);
        let first = store
            .list_tasks(Access::Owner(Some("me")), query(None).into())
            .await
            .expect("list");
        assert!(first.items.is_empty(), "my task is beyond the scan bound");
        let examined = store.ids_examined();
        assert_eq!(examined, MAX_SCAN as u64);
        let second = store
            .list_tasks(Access::Owner(Some("me")), query(first.next_cursor).into())
            .await
            .expect("list");
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].id, mine.task.id);
        assert!(second.next_cursor.is_none());
    }
}
