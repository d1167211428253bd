//! UTC days: the unit of archive rotation. Days are counted since the Unix epoch and
//! written as `YYYY-MM-DD` in file names.

use fleetpoll_actors::UnixTime;

/// Seconds in one day.
pub(crate) const DAY_SECS: i64 = 86_400;

/// The UTC day (days since 1970-01-01) that contains `t`.
pub(crate) fn day_of(t: UnixTime) -> i64 {
    t.div_euclid(DAY_SECS)
}

/// The first second of a UTC day.
pub(crate) fn day_start(day: i64) -> UnixTime {
    day * DAY_SECS
}

/// `YYYY-MM-DD` of a day number (proleptic Gregorian calendar).
pub(crate) fn format_day(day: i64) -> String {
    // Shift the epoch to 0000-03-01 so that leap days end a 400-year era's years.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` text, if it is one.
pub(crate) fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let day = era * 146_097 + doe - 719_468;
    (format_day(day) == text).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format_and_parse_back_across_leap_years() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(day_of(1_739_893_201)), "2025-02-18");
        assert_eq!(format_day(day_of(951_782_400)), "2000-02-29");
        for day in (-1000..30_000).step_by(7) {
            assert_eq!(parse_day(&format_day(day)), Some(day));
        }
        assert_eq!(parse_day("2025-02-30"), None);
        assert_eq!(parse_day("2025-2-3"), None);
    }

    #[test]
    fn a_day_starts_at_utc_midnight() {
        let t = 1_739_893_201;
        assert_eq!(day_start(day_of(t)), 1_739_836_800);
        assert_eq!(day_of(day_start(day_of(t)) - 1), day_of(t) - 1);
    }
}
