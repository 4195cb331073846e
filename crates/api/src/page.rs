//! Pagination of the list endpoints. headscale's API answers whole lists,
//! so that stays the default: without `pageSize` every item comes back in
//! one answer. With it, items come in pages in id order, and an answer with
//! more to come carries `nextPageToken`, which the next request passes back
//! as `pageToken`. Pages are keyed by id, not by position, so an item added
//! or deleted between two requests neither repeats nor hides another.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageQuery {
    /// At most this many items, 1 to 1000. Absent: every item in one answer.
    #[param(value_type = Option<String>, format = "uint32")]
    pub(crate) page_size: Option<String>,
    /// The `nextPageToken` of the previous answer.
    pub(crate) page_token: Option<String>,
}

/// One page of a list and the token of the next, if there is more.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_page_token: Option<String>,
}

impl PageQuery {
    /// `items` sorted by `id`, cut to the page asked for.
    pub(crate) fn apply<T>(
        &self,
        items: Vec<T>,
        id: impl Fn(&T) -> i64,
    ) -> Result<Page<T>, ApiError> {
        let size = match self.page_size.as_deref() {
            None | Some("") => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "query parameter pageSize: {text:?} is not a page size; give a whole number from 1 to {MAX_PAGE_SIZE}, or leave it out for every item"
                    )));
                }
            },
        };
        let from = match self.page_token.as_deref() {
            None | Some("") => None,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "query parameter pageToken: {text:?} is not a token this server gave; pass the nextPageToken of the previous answer"
                    )));
                }
            },
        };
        debug_assert!(items.windows(2).all(|w| id(&w[0]) < id(&w[1])));
        let mut rest = items
            .into_iter()
            .skip_while(|i| from.is_some_and(|f| id(i) < f));
        let Some(size) = size else {
            return Ok(Page {
                items: rest.collect(),
                next_page_token: None,
            });
        };
        let items: Vec<T> = rest.by_ref().take(size).collect();
        Ok(Page {
            items,
            next_page_token: rest.next().map(|next| id(&next).to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(size: Option<&str>, token: Option<&str>) -> PageQuery {
        PageQuery {
            page_size: size.map(str::to_string),
            page_token: token.map(str::to_string),
        }
    }

    #[test]
    fn without_a_size_everything_comes_at_once() {
        let p = q(None, None).apply(vec![1, 2, 5], |i| *i).unwrap();
        assert_eq!((p.items, p.next_page_token), (vec![1, 2, 5], None));
    }

    #[test]
    fn pages_follow_each_other_by_token_until_the_last() {
        let ids = vec![1, 2, 5, 8, 9];
        let p = q(Some("2"), None).apply(ids.clone(), |i| *i).unwrap();
        assert_eq!(p.items, vec![1, 2]);
        let t = p.next_page_token.unwrap();
        assert_eq!(t, "5");
        let p = q(Some("2"), Some(&t)).apply(ids.clone(), |i| *i).unwrap();
        assert_eq!(p.items, vec![5, 8]);
        let p = q(Some("2"), p.next_page_token.as_deref())
            .apply(ids.clone(), |i| *i)
            .unwrap();
        assert_eq!((p.items, p.next_page_token), (vec![9], None));
        // A page that ends exactly at the end has no next token.
        let p = q(Some("5"), None).apply(ids, |i| *i).unwrap();
        assert_eq!((p.items.len(), p.next_page_token), (5, None));
    }

    #[test]
    fn an_item_deleted_between_pages_hides_nothing() {
        let p = q(Some("2"), None).apply(vec![1, 2, 5, 8], |i| *i).unwrap();
        let t = p.next_page_token.unwrap();
        // 5 is deleted before the next request.
        let p = q(Some("2"), Some(&t)).apply(vec![1, 2, 8], |i| *i).unwrap();
        assert_eq!(p.items, vec![8]);
    }

    #[test]
    fn bad_sizes_and_tokens_are_refused_with_the_parameter_named() {
        for (size, token, what) in [
            (Some("0"), None, "pageSize"),
            (Some("1001"), None, "pageSize"),
            (Some("ten"), None, "pageSize"),
            (Some("-1"), None, "pageSize"),
            (None, Some("abc"), "pageToken"),
            (None, Some("0"), "pageToken"),
        ] {
            let err = q(size, token).apply(vec![1], |i| *i).unwrap_err();
            assert!(err.to_string().contains(what), "{size:?} {token:?}: {err}");
        }
    }
}
