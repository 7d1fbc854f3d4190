//! Extractors whose rejections are problems, pagination parameters, and the bridge from async
//! handlers to the core's synchronous SQLite work.

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::{Problem, ProblemKind};

/// The default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size.
pub const MAX_LIMIT: u32 = 500;

/// A JSON request body; a rejection is a problem (400 syntax, 415 content type, 413 size,
/// 422 data).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match <axum::Json<T> as FromRequest<S>>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::from_json_rejection(&rejection)),
        }
    }
}

impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(value) => Ok(value.map(|axum::Json(v)| Self(v))),
            Err(rejection) => Err(Problem::from_json_rejection(&rejection)),
        }
    }
}

/// Path parameters; a rejection is a problem.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::from_path_rejection(&rejection)),
        }
    }
}

/// Query parameters; a rejection is a 400 problem.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::from_query_rejection(&rejection)),
        }
    }
}

/// A checked page size: `limit` (default 50) must lie in 1..=500.
pub fn page_limit(limit: Option<u32>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(Problem::new(
            ProblemKind::MalformedRequest,
            format!("limit {limit} is outside 1..={MAX_LIMIT}"),
        ))
    }
}

/// One page of a list: at most `limit` items of `items` (which may hold one more, fetched to
/// learn whether another page follows), and the cursor of the next page.
pub fn paginate<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(|item| id(item).to_owned());
        (items, next)
    } else {
        (items, None)
    }
}

/// Runs the core's synchronous work on tokio's blocking pool; a core error becomes its
/// problem, and a panic becomes a 500 (nothing a handler calls can take the server down).
pub async fn blocking<T, F>(work: F) -> Result<T, Problem>
where
    F: FnOnce() -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => {
            eprintln!("omnicloud api: request work failed: {join}");
            Err(Problem::internal())
        }
    }
}
