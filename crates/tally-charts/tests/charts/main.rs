//! The integration tests of tally-charts, in one test binary (as ripgrep's `tests/`): the
//! rendered pages (escaping, series, snapshots of the chart SVG in `snapshots/`) and the same
//! pages in headless Chromium, with seeded aggregates in `support` and the WebDriver client of `tally-test-support`.
#![allow(clippy::disallowed_methods)] // tests read the harness's environment

mod browser;
mod render;
mod support;
