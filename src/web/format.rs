//! How the page writes numbers and times: units for chart axes and tables, UTC dates
//! without a date crate (civil-from-days), ages such as "12 s ago".

/// What a value measures, for its axis labels and table cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Unit {
    /// A share 0 … 1, shown as a percentage.
    #[default]
    Share,
    /// Bytes.
    Bytes,
    /// Bytes per second.
    BytesPerSec,
    /// Seconds (uptime).
    Seconds,
    /// A plain number (load).
    Plain,
}

impl Unit {
    /// The name the page's script reads from `data-unit`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unit::Share => "share",
            Unit::Bytes => "bytes",
            Unit::BytesPerSec => "bytes/s",
            Unit::Seconds => "seconds",
            Unit::Plain => "plain",
        }
    }

    /// `v` written for a person.
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Unit::Share => format!("{:.0} %", v * 100.0),
            Unit::Bytes => binary(v, ""),
            Unit::BytesPerSec => binary(v, "/s"),
            Unit::Seconds => duration(v as i64),
            Unit::Plain => {
                if v.abs() >= 100.0 || v == v.trunc() {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            }
        }
    }
}

fn binary(v: f64, suffix: &str) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v.abs() >= 100.0 {
        format!("{v:.0} {}{suffix}", UNITS[i])
    } else {
        format!("{v:.1} {}{suffix}", UNITS[i])
    }
}

/// `secs` as "3 d 4 h", "5 h 2 min", "12 min", "40 s".
pub(crate) fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago `t` was, seen from `now`; "in …" for the future.
pub(crate) fn ago(t: i64, now: i64) -> String {
    if t > now {
        format!("in {}", duration(t - now))
    } else {
        format!("{} ago", duration(now - t))
    }
}

/// The UTC date of `t` as (year, month, day, hour, minute).
pub(crate) fn utc(t: i64) -> (i64, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
    )
}

/// `t` as "2026-12-01 15:04 UTC".
pub(crate) fn utc_time(t: i64) -> String {
    let (y, mo, d, h, mi) = utc(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// An axis label for `t` on an axis spanning `span` seconds: the time of day for a
/// span up to two days, the date up to a year, the month beyond.
pub(crate) fn utc_label(t: i64, span: i64) -> String {
    let (y, mo, d, h, mi) = utc(t);
    if span <= 2 * 86_400 {
        format!("{h:02}:{mi:02}")
    } else if span <= 400 * 86_400 {
        format!("{mo:02}-{d:02}")
    } else {
        format!("{y:04}-{mo:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_days() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0));
        assert_eq!(utc_time(1_796_000_000), "2026-11-30 00:53 UTC");
    }

    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(Unit::Share.format(0.42), "42 %");
        assert_eq!(
            Unit::Bytes.format(3.5 * 1024.0 * 1024.0 * 1024.0),
            "3.5 GiB"
        );
        assert_eq!(Unit::BytesPerSec.format(512.0), "512 B/s");
        assert_eq!(ago(100, 130), "30 s ago");
        assert_eq!(ago(200, 130), "in 1 min");
    }
}
