//! Wall-clock times as the logs write them, all in UTC: the error log's
//! `2026-11-22 10:00:00 +0000`, the access log's `[22/Nov/2026:10:00:00 +0000]`
//! (the Common Log Format's) and JSON's RFC 3339 `2026-11-22T10:00:00.123456Z`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `2026-11-22 10:00:00 +0000` (the error log's text lines).
pub fn error_log(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000")
}

/// Appends `[22/Nov/2026:10:00:00 +0000]` (Common Log Format) to `out`.
pub fn write_clf(t: SystemTime, out: &mut Vec<u8>) {
    let (y, mo, d, h, mi, s) = civil(t);
    let month = MONTHS[(mo - 1) as usize];
    // Writes to a Vec cannot fail.
    let _ = write!(out, "[{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000]");
}

/// `2026-11-22T10:00:00.123456Z` (RFC 3339, microseconds).
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}Z")
}

/// UTC calendar date and time of `t`: (year, month 1-12, day, hour, min, sec).
/// Howard Hinnant's `civil_from_days`; exact for every date after 1970.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_795_343_696), (2026, 11, 22, 10, 34, 56));
    }

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_343_696_000_042);
        let mut clf = Vec::new();
        write_clf(t, &mut clf);
        assert_eq!(clf, b"[22/Nov/2026:10:34:56 +0000]");
        assert_eq!(rfc3339(t), "2026-11-22T10:34:56.000042Z");
        assert_eq!(error_log(t), "2026-11-22 10:34:56 +0000");
    }
}
