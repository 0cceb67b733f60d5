//! `?limit=&cursor=` on every list, answered as `{"data": [...], "next_cursor": ...}`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A validated page request. The cursor is opaque to clients: base64 of the last key seen.
#[derive(Debug)]
pub struct Page {
    pub limit: i64,
    pub after: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "limit",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}."),
                    )
                })?,
        };
        let after = match &self.cursor {
            None => None,
            Some(raw) if raw.is_empty() => None,
            Some(raw) => Some(
                URL_SAFE_NO_PAD
                    .decode(raw)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        ApiError::invalid_param("cursor", "cursor is not one this API returned.")
                    })?,
            ),
        };
        Ok(Page { limit, after })
    }
}

/// Always `list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ListObject {
    #[default]
    #[serde(rename = "list")]
    List,
}

/// A page of a list, in the order of its key.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct List<T> {
    pub object: ListObject,
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// `rows` holds up to `limit + 1` items; the extra one only says there is a next page.
    pub fn from_rows(mut rows: Vec<T>, page: &Page, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Self {
            object: ListObject::List,
            data: rows,
            next_cursor,
        }
    }

    /// A whole list on one page.
    pub fn all(data: Vec<T>) -> Self {
        Self {
            object: ListObject::List,
            data,
            next_cursor: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_must_be_within_bounds() {
        for bad in ["0", "-1", "1001", "ten"] {
            let q = PageQuery {
                limit: Some(bad.into()),
                cursor: None,
            };
            assert!(q.page().is_err(), "{bad} accepted");
        }
        let q = PageQuery {
            limit: Some("1000".into()),
            cursor: None,
        };
        assert_eq!(q.page().expect("valid").limit, 1000);
    }

    #[test]
    fn cursor_round_trips_and_garbage_is_refused() {
        let page = Page {
            limit: 2,
            after: None,
        };
        let list = List::from_rows(vec!["a", "b", "c"], &page, |s| s.to_string());
        assert_eq!(list.data, vec!["a", "b"]);
        let q = PageQuery {
            limit: None,
            cursor: list.next_cursor,
        };
        assert_eq!(q.page().expect("valid").after.as_deref(), Some("b"));
        let q = PageQuery {
            limit: None,
            cursor: Some("%%%".into()),
        };
        assert!(q.page().is_err());
    }
}
