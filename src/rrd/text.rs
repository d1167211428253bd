//! rrdtool's text output: C's `%0.10e` number format, the `fetch` table and the
//! `info` key = value lines.

use std::fmt::Write as _;

use super::database::Rrd;
use super::fetch::FetchResult;

/// Formats like C's `printf("%0.10e", value)` with glibc: `1.0000000000e+00`,
/// at least two exponent digits, `-nan` for unknown, `inf`/`-inf`, `-0.0…` kept.
pub fn format_e10(value: f64) -> String {
    if value.is_nan() {
        // rrdtool's unknown is the default NaN of x86, whose sign bit is set.
        return "-nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let text = format!("{:.10e}", value.abs());
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if value.is_sign_negative() { "-" } else { "" };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.unsigned_abs())
}

/// Renders a fetch result exactly as `rrdtool fetch` prints it: a header of
/// right-aligned names, a blank line, then `ts: v1 v2 …` lines.
pub fn render_fetch(result: &FetchResult) -> String {
    let mut out = String::from("           ");
    for name in &result.names {
        let _ = write!(out, "{name:>20}");
    }
    out.push_str("\n\n");
    for (ts, values) in &result.rows {
        let _ = write!(out, "{ts:>10}:");
        for &v in values {
            out.push(' ');
            out.push_str(&format_e10(v));
        }
        out.push('\n');
    }
    out
}

fn info_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else {
        format_e10(value)
    }
}

/// Renders the `key = value` lines of `rrdtool info` for the parts this engine has.
pub fn render_info(rrd: &Rrd, filename: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "filename = \"{filename}\"");
    let _ = writeln!(out, "step = {}", rrd.step());
    let _ = writeln!(out, "last_update = {}", rrd.last_update());
    for (i, (ds, prep)) in rrd.data_sources().iter().zip(rrd.pdp_preps()).enumerate() {
        let key = format!("ds[{}]", ds.name);
        let _ = writeln!(out, "{key}.index = {i}");
        let _ = writeln!(out, "{key}.type = \"{}\"", ds.kind);
        let _ = writeln!(out, "{key}.minimal_heartbeat = {}", ds.heartbeat);
        let _ = writeln!(
            out,
            "{key}.min = {}",
            info_number(ds.min.unwrap_or(f64::NAN))
        );
        let _ = writeln!(
            out,
            "{key}.max = {}",
            info_number(ds.max.unwrap_or(f64::NAN))
        );
        let _ = writeln!(out, "{key}.last_ds = \"{}\"", prep.last_raw);
        let _ = writeln!(out, "{key}.value = {}", info_number(prep.value));
        let _ = writeln!(out, "{key}.unknown_sec = {}", prep.unknown_sec);
    }
    let ds_count = rrd.data_sources().len();
    for (r, (rra, ring)) in rrd.archives().iter().zip(rrd.rings()).enumerate() {
        let key = format!("rra[{r}]");
        let _ = writeln!(out, "{key}.cf = \"{}\"", rra.cf);
        let _ = writeln!(out, "{key}.rows = {}", rra.rows);
        let _ = writeln!(out, "{key}.cur_row = {}", ring.cur_row);
        let _ = writeln!(out, "{key}.pdp_per_row = {}", rra.steps);
        let _ = writeln!(out, "{key}.xff = {}", format_e10(rra.xff));
        for d in 0..ds_count {
            let prep = rrd.cdp_preps()[r * ds_count + d];
            let _ = writeln!(
                out,
                "{key}.cdp_prep[{d}].value = {}",
                info_number(prep.value)
            );
            let _ = writeln!(
                out,
                "{key}.cdp_prep[{d}].unknown_datapoints = {}",
                prep.unknown_pdps
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e10_matches_c_printf() {
        assert_eq!(format_e10(1.0), "1.0000000000e+00");
        assert_eq!(format_e10(-2.4), "-2.4000000000e+00");
        assert_eq!(format_e10(1e-300), "1.0000000000e-300");
        assert_eq!(format_e10(1e300), "1.0000000000e+300");
        assert_eq!(format_e10(-0.0), "-0.0000000000e+00");
        assert_eq!(format_e10(0.0), "0.0000000000e+00");
        assert_eq!(format_e10(f64::NAN), "-nan");
        assert_eq!(format_e10(1.0 / 3.0), "3.3333333333e-01");
        assert_eq!(
            format_e10(123456789012345678901234567890.0),
            "1.2345678901e+29"
        );
    }
}
