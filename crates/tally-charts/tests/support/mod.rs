//! Shared test support: seeded aggregates, and a small WebDriver client for headless Chromium.

pub mod fixtures;
pub mod webdriver;
