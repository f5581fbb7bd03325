//! Server-rendered charts for the collector's dashboard and for `tally view`.
//!
//! Every page is one self-contained HTML document: inline CSS, inline SVG, no script, no font,
//! no image and no link to anything off the page (a Content-Security-Policy in each page makes
//! the browser enforce that). So the dashboard works with no network, `tally view --out` writes
//! a single file, and the pages are usable on a phone (SVGs scale to their container, legends
//! wrap).
//!
//! What this crate promises:
//! - every name it is given (program, counter, version, OS, arch) is escaped wherever it appears,
//!   so a hostile name can neither inject markup nor break the document;
//! - it draws exactly the data it is given: the publication threshold is applied by the server
//!   before the aggregates reach [`dashboard_index`] and [`program_page`];
//! - each drawn datum carries `data-*` attributes naming its series, week and value, which the
//!   browser tests check.
//!
//! Entry points: [`dashboard_index`] (the server's `GET /`), [`program_page`] (its
//! `GET /programs/{program}`), and [`user_view`] (`tally view`).

#![forbid(unsafe_code)]

pub mod buckets;
pub mod dashboard;
pub mod html;
pub mod svg;
pub mod user;
mod user_compiles;
mod user_data;

pub use dashboard::{dashboard_index, partition_of, program_page, weeks_with_program};
pub use html::CONTENT_SECURITY_POLICY;
pub use user::user_view;
pub use user_data::{UserData, UserWeek};
