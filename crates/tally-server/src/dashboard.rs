//! The dashboard: the seam between the server and `tally-charts`.
//!
//! `GET /` is the index (programs, latest weeks, reports per week) and
//! `GET /programs/{program}` one program's charts over its latest [`PROGRAM_WEEKS`] weeks. Both
//! are drawn from the same published aggregates as the JSON API (`AppState::weeks_index`,
//! `AppState::program_week`), which are already thresholded: nothing withheld can reach a page.
//! Pages are self-contained HTML (inline CSS and SVG, no script), so the dashboard needs no
//! network and no asset routes; `routes.rs` serves them.

use axum::http::StatusCode;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex};

use crate::AppState;

/// How many of a program's latest weeks its page charts.
pub const PROGRAM_WEEKS: usize = 26;

/// The index page. Program details live on their own pages, with every week rather than one.
pub fn index_page(index: &WeeksIndex) -> String {
    tally_charts::dashboard_index(index)
}

/// `GET /programs/{program}`: the program's charts, with 404 when nothing about it is
/// published.
pub fn program_page(state: &AppState, program: &str) -> (StatusCode, String) {
    let index = state.weeks_index();
    let weeks: Vec<ProgramWeek> = tally_charts::weeks_with_program(&index, program, PROGRAM_WEEKS)
        .into_iter()
        .filter_map(|week| state.program_week(week, program))
        .collect();
    let status = if weeks.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (
        status,
        tally_charts::program_page(program, &weeks, state.threshold()),
    )
}
