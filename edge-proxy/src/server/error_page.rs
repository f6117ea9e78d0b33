//! Custom error responses (CloudFront `customErrorResponses`): an object from the origin served
//! in place of an error answer, under its own response code. The page is fetched through the
//! cache like any object.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;

use super::fetch::{self, Collapsed, Fetched};
use super::{Edge, Generation};
use crate::cache::key::normalize_path;
use crate::cache::Entry;

/// The custom error page for `code` and the status to answer with, if one is configured and
/// can be had (a failing page falls back to the plain error).
pub async fn error_page(
    edge: &Arc<Edge>,
    generation: &Arc<Generation>,
    code: u16,
) -> Option<(StatusCode, Arc<Entry>)> {
    let custom = generation.settings.error_response(code)?;
    let page_path = custom.response_page_path.as_ref()?;
    let status = StatusCode::from_u16(custom.response_code.unwrap_or(code)).ok()?;
    let path = normalize_path(page_path).ok()?;
    let now = Instant::now();
    if let Some(e) = generation.store.get(&path).await {
        if !e.is_negative() && (e.is_fresh(now) || e.usable_if_error(now)) {
            return Some((status, e));
        }
    }
    match fetch::fetch_collapsed(edge, generation, &path, None)
        .await
        .0
    {
        Collapsed::Done(Ok(f)) => match &*f {
            Fetched::Entry { entry, .. } if !entry.is_negative() => Some((status, entry.clone())),
            _ => None,
        },
        _ => None,
    }
}
