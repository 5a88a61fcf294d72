//! Keyset pagination: a page of items and the cursor of the next page.

use serde::Serialize;
use utoipa::ToSchema;

use super::validation::ValidationErrors;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor_of) } else { None };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

pub fn check_limit(errors: &mut ValidationErrors, limit: Option<i64>) -> i64 {
    match limit {
        None => DEFAULT_LIMIT,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            errors.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
            DEFAULT_LIMIT
        }
    }
}

/// Reads a `cursor` this API returned with `parse`; anything else is a validation error.
pub fn check_cursor<C>(
    errors: &mut ValidationErrors,
    cursor: Option<&str>,
    parse: impl FnOnce(&str) -> Option<C>,
) -> Option<C> {
    let text = cursor?;
    let parsed = parse(text);
    if parsed.is_none() {
        errors.add("cursor", "is not a cursor this API returned");
    }
    parsed
}
