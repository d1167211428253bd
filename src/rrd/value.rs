//! Raw update values as given (`U`, integers, decimals) and the counter difference
//! rules: exact integer differences, no difference across a sign change, and the
//! COUNTER wrap corrections.

use std::fmt;

use super::error::RrdError;

/// What COUNTER adds to a negative difference first (one 32-bit wrap, as rrdtool does).
const WRAP_32: f64 = 4_294_967_295.0;
/// What COUNTER adds next when the difference is still negative (a 64-bit wrap).
const WRAP_64: f64 = 18_446_744_069_414_584_320.0;

/// One raw value of an update, kept exactly as precise as it was written so that
/// counter differences of 64-bit values are not rounded before subtracting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RawValue {
    /// `U`: unknown.
    Unknown,
    /// An integer: its sign (a written `-`) and magnitude.
    Integer {
        /// Whether it was written with a leading `-`.
        negative: bool,
        /// Its absolute value.
        magnitude: u128,
    },
    /// Any other number.
    Float(f64),
}

impl RawValue {
    /// Parses `U`, an integer (`[+-]digits`) or a decimal number; `None` when invalid.
    pub fn parse(text: &str) -> Option<RawValue> {
        if text == "U" {
            return Some(RawValue::Unknown);
        }
        let (negative, digits) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(magnitude) = digits.parse::<u128>() {
                return Some(RawValue::Integer {
                    negative,
                    magnitude,
                });
            }
        }
        match text.parse::<f64>() {
            Ok(v) if !v.is_nan() => Some(RawValue::Float(v)),
            _ => None,
        }
    }

    /// A measured value as the engine receives it from a remote; integral values are
    /// kept as integers so counter differences stay exact.
    pub fn from_f64(value: f64) -> RawValue {
        if value.is_nan() {
            return RawValue::Unknown;
        }
        if value.fract() == 0.0 && value.abs() < 1e38 {
            return RawValue::Integer {
                negative: value.is_sign_negative(),
                magnitude: value.abs() as u128,
            };
        }
        RawValue::Float(value)
    }

    /// Whether this is `U`.
    pub fn is_unknown(self) -> bool {
        matches!(self, RawValue::Unknown)
    }

    /// The value as a float (NaN for `U`), rounded the way `strtod` rounds the text.
    pub fn as_f64(self) -> f64 {
        match self {
            RawValue::Unknown => f64::NAN,
            RawValue::Integer {
                negative,
                magnitude,
            } => {
                let v = magnitude as f64;
                if negative {
                    -v
                } else {
                    v
                }
            }
            RawValue::Float(v) => v,
        }
    }

    /// `self − previous` as DERIVE sees it: exact for integers, unknown when the two
    /// have different signs, negated magnitude difference when both are negative.
    pub fn difference(self, previous: RawValue) -> f64 {
        match (self, previous) {
            (RawValue::Unknown, _) | (_, RawValue::Unknown) => f64::NAN,
            (
                RawValue::Integer {
                    negative: a_neg,
                    magnitude: a,
                },
                RawValue::Integer {
                    negative: b_neg,
                    magnitude: b,
                },
            ) => {
                if a_neg != b_neg {
                    return f64::NAN;
                }
                let magnitude_diff = if a >= b {
                    decimal_to_f64(a - b)
                } else {
                    -decimal_to_f64(b - a)
                };
                if a_neg {
                    -magnitude_diff
                } else {
                    magnitude_diff
                }
            }
            (a, b) => a.as_f64() - b.as_f64(),
        }
    }

    /// `self − previous` as COUNTER sees it: a negative difference is a wrap.
    pub fn counter_difference(self, previous: RawValue) -> f64 {
        let mut diff = self.difference(previous);
        if diff < 0.0 {
            diff += WRAP_32;
        }
        if diff < 0.0 {
            diff += WRAP_64;
        }
        diff
    }
}

/// Converts an exact difference to a float the way rrdtool does: digit by digit,
/// `value × 10 + digit` in double precision (so differences beyond 2^53 round
/// exactly as rrdtool's do, not to the nearest float).
///
/// Below 2^53 every partial value is an integer a double holds exactly, so the result
/// is `n` itself; the digits are only walked above that (without building a string:
/// this runs for every counter of every update).
fn decimal_to_f64(n: u128) -> f64 {
    if n < 1 << 53 {
        return n as f64;
    }
    let mut digits = [0u8; 39];
    let mut len = 0;
    let mut rest = n;
    while rest > 0 {
        digits[len] = (rest % 10) as u8;
        rest /= 10;
        len += 1;
    }
    digits[..len]
        .iter()
        .rev()
        .fold(0.0, |acc, &digit| acc * 10.0 + f64::from(digit))
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Unknown => f.write_str("U"),
            RawValue::Integer {
                negative,
                magnitude,
            } => write!(f, "{}{magnitude}", if *negative { "-" } else { "" }),
            RawValue::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Parses one update `T:v1:v2…` (rrdtool's syntax) with exactly `ds_count` values;
/// a time of `N` means `now`.
pub fn parse_update(
    text: &str,
    now: i64,
    ds_count: usize,
) -> Result<(i64, Vec<RawValue>), RrdError> {
    let mut parts = text.split(':');
    let time = match parts.next().unwrap_or_default() {
        "N" => now,
        t => t
            .parse::<i64>()
            .map_err(|_| RrdError::update(text, "the time must be seconds since the epoch or N"))?,
    };
    let values = parts
        .map(|v| {
            RawValue::parse(v)
                .ok_or_else(|| RrdError::update(text, format!("{v:?} is neither a number nor U")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if values.len() != ds_count {
        return Err(RrdError::update(
            text,
            format!(
                "expected {ds_count} values (one per data source), got {}",
                values.len()
            ),
        ));
    }
    Ok((time, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawValue {
        RawValue::parse(text).unwrap()
    }

    #[test]
    fn integer_differences_are_exact_beyond_f64_precision() {
        let diff = raw("18446744073709551615").difference(raw("18446744073709551610"));
        assert_eq!(diff, 5.0);
    }

    #[test]
    fn differences_convert_digit_by_digit_as_rrdtool_does() {
        let by_digits = |n: u128| {
            n.to_string()
                .bytes()
                .fold(0.0, |acc, d| acc * 10.0 + f64::from(d - b'0'))
        };
        let mut cases = vec![0, 1, 9, 10, 12_345, (1 << 53) - 1, 1 << 53, (1 << 53) + 1];
        cases.extend([u64::MAX as u128, 123_456_789_012_345_678_901, u128::MAX]);
        cases.extend((0..200u32).map(|i| (1u128 << 52) + u128::from(i) * 7_777_777_777));
        for n in cases {
            assert_eq!(decimal_to_f64(n).to_bits(), by_digits(n).to_bits(), "{n}");
        }
    }

    #[test]
    fn difference_across_a_sign_change_is_unknown() {
        assert!(raw("3").difference(raw("-5")).is_nan());
        assert_eq!(raw("-20").difference(raw("-10")), -10.0);
    }

    #[test]
    fn counter_wraps_at_32_then_64_bits() {
        assert_eq!(raw("90").counter_difference(raw("100")), 4_294_967_285.0);
        assert_eq!(
            raw("5").counter_difference(raw("4294967295")),
            5.0,
            "a 32-bit wrap from the maximum adds 2^32-1"
        );
        assert!(raw("5").counter_difference(raw("18446744073709551606")) >= 0.0);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(RawValue::parse("12a"), None);
        assert_eq!(RawValue::parse(""), None);
        assert_eq!(RawValue::parse("nan"), None);
        assert_eq!(RawValue::parse("U"), Some(RawValue::Unknown));
    }
}
