//! Helpers of the application database: UTC times as the stores keep them, readable ids, and
//! opening the embedded file directly (tests that build old-style files). The stores
//! themselves go through `lore_db` (SQLite or PostgreSQL).

use std::path::Path;

use rusqlite::Connection;

use crate::error::Result;

/// A connection to the embedded database file, set up like the stores' own (WAL).
pub fn open(path: &Path) -> Result<Connection> {
    Ok(lore_db::open_sqlite(path)?)
}

/// Seconds since the Unix epoch (the database stores times as integers).
pub fn now() -> i64 {
    lore_db::now()
}

/// RFC 3339 UTC text of a Unix time, e.g. `2026-11-26T13:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let (year, month, day) = lore_usage::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (or a bare date) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, t.trim_end_matches('Z')),
        None => (text, "00:00:00"),
    };
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next().flatten().unwrap_or(0), t.next().flatten().unwrap_or(0));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(lore_usage::days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A random id with a readable prefix, e.g. `job_3f9a…` (96 bits).
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [0, 951_782_400, 1_700_000_000, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{}", rfc3339(secs));
        }
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("2024-13-01"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
