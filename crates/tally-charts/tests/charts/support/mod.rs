//! Shared test support: seeded aggregates, and a small WebDriver client for headless Chromium.

pub mod fixtures;
// The WebDriver client stays outside this binary's directory: the browser tests of tally-commands
// and tally-server include the same file by path.
#[path = "../../support/webdriver.rs"]
pub mod webdriver;
