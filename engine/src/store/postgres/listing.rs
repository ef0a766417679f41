//! Listing: newest-first pages of tasks (`tasks/list`) and contexts (`contexts/list`),
//! read in batches sized by what the page still has room for.

use bindu_schemas::{ContextSummary, Task};
use sqlx::Row;

use super::{db_error, read, writer, PostgresStore};
use crate::store::{
    json_size, page_has_room, Access, ListQuery, Page, StoreError, TaskFilter, TaskListing,
};

impl PostgresStore {
    pub(super) async fn list_tasks_page(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<Page<Task>, StoreError> {
        let TaskListing {
            query,
            filter,
            shape,
        } = listing;
        let mut before = read::parse_cursor(query.cursor.as_deref())?;
        let filters = Filters::new(access, query, filter);
        let (slice, keep) = match shape.history {
            None => (read::HistorySlice::All, 0),
            Some(0) => (read::HistorySlice::None, 0),
            Some(n) => (
                read::HistorySlice::Newest,
                i32::try_from(n).unwrap_or(i32::MAX),
            ),
        };
        let sql = read::task_page(filters.present(), slice, shape.artifacts);
        let limit = query.limit.max(1) as usize;
        // Without a size bound, one query for the page (and one row more: is there a next
        // page?). With one, rows are read in growing batches sized by what the page has
        // room for, so a page of large tasks reads about the bound, not `limit` tasks.
        let mut batch = if shape.max_bytes.is_some() {
            8.min(limit + 1)
        } else {
            limit + 1
        };
        let mut items = Vec::new();
        let mut total = 0usize;
        let mut last: Option<i64> = None;
        loop {
            let want = batch.min(limit + 1 - items.len());
            let rows = self
                .read(|| {
                    let mut q = sqlx::query(&sql)
                        .bind(self.agent)
                        .bind(before)
                        .bind(want as i64);
                    if slice == read::HistorySlice::Newest {
                        q = q.bind(keep);
                    }
                    filters.bind(q).fetch_all(&self.pool)
                })
                .await?;
            self.list_rows
                .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for row in &rows {
                let mut task = read::snapshot(row)?.task;
                if slice == read::HistorySlice::None {
                    task.history = None;
                }
                let size = if shape.max_bytes.is_some() {
                    json_size(&task)
                } else {
                    0
                };
                if !page_has_room(items.len(), total, size, limit, shape) {
                    return Ok(Page {
                        items,
                        next_cursor: last.map(|s| s.to_string()),
                    });
                }
                items.push(task);
                total = total.saturating_add(size);
                let seq: i64 = row.try_get("seq_no").map_err(db_error)?;
                last = Some(seq);
                before = seq;
            }
            if rows.len() < want {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            // The next batch: what the remaining room holds at the average size so far,
            // at most twice this one.
            let room = shape
                .max_bytes
                .map_or(usize::MAX, |max| max.saturating_sub(total));
            let average = (total / items.len().max(1)).max(1);
            batch = (room / average).clamp(1, batch.saturating_mul(2).min(256));
        }
    }

    /// The number of tasks in every page of `listing`: one `count(*)` with the pages'
    /// conditions (without their cursor).
    pub(super) async fn count_listed(
        &self,
        access: Access<'_>,
        listing: &TaskListing,
    ) -> Result<u64, StoreError> {
        let filters = Filters::new(access, &listing.query, &listing.filter);
        let sql = read::task_count(filters.present());
        let row = self
            .read(|| {
                filters
                    .bind(sqlx::query(&sql).bind(self.agent))
                    .fetch_one(&self.pool)
            })
            .await?;
        let n: i64 = row.try_get(0).map_err(db_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn list_contexts_page(
        &self,
        access: Access<'_>,
        query: ListQuery,
    ) -> Result<Page<ContextSummary>, StoreError> {
        let before = read::parse_cursor(query.cursor.as_deref())?;
        let owner = Self::owner_filter(access);
        let sql = read::context_page(owner.is_some());
        let limit = i64::from(query.limit) + 1;
        let rows = self
            .read(|| {
                let mut q = sqlx::query(&sql).bind(self.agent).bind(before);
                if let Some(o) = owner {
                    q = q.bind(o);
                }
                q.bind(limit).fetch_all(&self.pool)
            })
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut next_cursor = None;
        for (i, row) in rows.iter().enumerate() {
            if i == query.limit as usize {
                next_cursor = Some(read::cursor_of(&rows[i - 1])?);
                break;
            }
            items.push(read::context_summary(row)?);
        }
        Ok(Page { items, next_cursor })
    }
}

/// The values of a task listing's optional conditions, bound in the order
/// [`read::TaskFilters`] numbers them, by the pages and the count alike.
struct Filters<'a> {
    owner: Option<&'a str>,
    context: Option<&'a str>,
    state: Option<i16>,
    status_after: Option<String>,
}

impl<'a> Filters<'a> {
    fn new(access: Access<'a>, query: &'a ListQuery, filter: &TaskFilter) -> Self {
        Filters {
            owner: PostgresStore::owner_filter(access),
            context: query.context_id.as_deref(),
            state: filter.state.map(writer::state_code),
            status_after: filter
                .status_after
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }

    /// Which conditions the statement has.
    fn present(&self) -> read::TaskFilters {
        read::TaskFilters {
            owner: self.owner.is_some(),
            context: self.context.is_some(),
            state: self.state.is_some(),
            status_after: self.status_after.is_some(),
        }
    }

    /// `q` with the conditions' values bound after its own.
    fn bind<'q>(&'q self, mut q: PgQuery<'q>) -> PgQuery<'q> {
        if let Some(o) = self.owner {
            q = q.bind(o);
        }
        if let Some(c) = self.context {
            q = q.bind(c);
        }
        if let Some(s) = self.state {
            q = q.bind(s);
        }
        if let Some(t) = &self.status_after {
            q = q.bind(t.as_str());
        }
        q
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
