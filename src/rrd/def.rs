//! The static shape of an RRD: data sources (`DS:name:TYPE:heartbeat:min:max`) and
//! round-robin archives (`RRA:CF:xff:steps:rows`), parsed from rrdtool's syntax.

use std::fmt;
use std::str::FromStr;

use super::error::RrdError;

/// The longest data-source name rrdtool accepts.
pub const MAX_DS_NAME_LEN: usize = 19;

/// How a data source's raw values turn into rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DsType {
    /// The value itself is the rate (temperature, memory used).
    Gauge,
    /// A growing counter; a decrease is taken as a 32-bit, then 64-bit wrap.
    Counter,
    /// A counter that may decrease; the difference is used as it is.
    Derive,
    /// A counter reset at every reading: the value is the increase since the last one.
    Absolute,
}

impl DsType {
    /// The name rrdtool uses (`GAUGE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DsType::Gauge => "GAUGE",
            DsType::Counter => "COUNTER",
            DsType::Derive => "DERIVE",
            DsType::Absolute => "ABSOLUTE",
        }
    }

    /// Whether a rate needs the previous raw value.
    pub fn needs_previous(self) -> bool {
        matches!(self, DsType::Counter | DsType::Derive)
    }
}

impl FromStr for DsType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "GAUGE" => Ok(DsType::Gauge),
            "COUNTER" => Ok(DsType::Counter),
            "DERIVE" => Ok(DsType::Derive),
            "ABSOLUTE" => Ok(DsType::Absolute),
            other => Err(format!(
                "unknown data source type {other:?} (GAUGE, COUNTER, DERIVE or ABSOLUTE)"
            )),
        }
    }
}

impl fmt::Display for DsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an archive consolidates several primary data points into one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cf {
    /// The mean of the known points.
    Average,
    /// The smallest known point.
    Min,
    /// The largest known point.
    Max,
    /// The last point.
    Last,
}

impl Cf {
    /// The name rrdtool uses (`AVERAGE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Cf::Average => "AVERAGE",
            Cf::Min => "MIN",
            Cf::Max => "MAX",
            Cf::Last => "LAST",
        }
    }
}

impl FromStr for Cf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AVERAGE" => Ok(Cf::Average),
            "MIN" => Ok(Cf::Min),
            "MAX" => Ok(Cf::Max),
            "LAST" => Ok(Cf::Last),
            other => Err(format!(
                "unknown consolidation function {other:?} (AVERAGE, MIN, MAX or LAST)"
            )),
        }
    }
}

impl fmt::Display for Cf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One data source: a named series with its type, heartbeat and accepted rate range.
#[derive(Clone, Debug, PartialEq)]
pub struct DsDef {
    /// 1–19 characters of `[A-Za-z0-9_]`.
    pub name: String,
    /// How raw values become rates.
    pub kind: DsType,
    /// The longest interval between two updates (seconds) that still counts as known.
    pub heartbeat: u64,
    /// Rates below this are unknown; `None` for no bound (`U`).
    pub min: Option<f64>,
    /// Rates above this are unknown; `None` for no bound (`U`).
    pub max: Option<f64>,
}

impl DsDef {
    /// Checks the name and bounds; `spec` is quoted in the error.
    pub fn validate(&self, spec: &str) -> Result<(), RrdError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_DS_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(RrdError::definition(
                spec,
                "the name must be 1-19 characters of A-Z, a-z, 0-9 and _",
            ));
        }
        if self.heartbeat == 0 {
            return Err(RrdError::definition(
                spec,
                "the heartbeat must be at least 1",
            ));
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min >= max {
                return Err(RrdError::definition(spec, "min must be less than max"));
            }
        }
        Ok(())
    }
}

impl FromStr for DsDef {
    type Err = RrdError;

    /// Parses `DS:name:TYPE:heartbeat:min:max`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = spec.split(':').collect();
        let [tag, name, kind, heartbeat, min, max] = parts[..] else {
            return Err(RrdError::definition(
                spec,
                "expected DS:name:TYPE:heartbeat:min:max",
            ));
        };
        if tag != "DS" {
            return Err(RrdError::definition(spec, "expected it to start with DS:"));
        }
        let kind = kind
            .parse::<DsType>()
            .map_err(|reason| RrdError::definition(spec, reason))?;
        let heartbeat = heartbeat
            .parse::<u64>()
            .map_err(|_| RrdError::definition(spec, "the heartbeat must be whole seconds"))?;
        let def = DsDef {
            name: name.to_string(),
            kind,
            heartbeat,
            min: parse_bound(spec, min)?,
            max: parse_bound(spec, max)?,
        };
        def.validate(spec)?;
        Ok(def)
    }
}

fn parse_bound(spec: &str, text: &str) -> Result<Option<f64>, RrdError> {
    if text == "U" {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(RrdError::definition(
            spec,
            format!("bound {text:?} must be a number or U"),
        )),
    }
}

/// One round-robin archive: `rows` rows, each consolidating `steps` primary data points.
#[derive(Clone, Debug, PartialEq)]
pub struct RraDef {
    /// How points are consolidated.
    pub cf: Cf,
    /// The share of unknown points (0 ≤ xff < 1) a row may hold and still be known.
    pub xff: f64,
    /// Primary data points per row.
    pub steps: u64,
    /// Rows kept.
    pub rows: u64,
}

impl RraDef {
    /// Checks the ranges; `spec` is quoted in the error.
    pub fn validate(&self, spec: &str) -> Result<(), RrdError> {
        if !(0.0..1.0).contains(&self.xff) {
            return Err(RrdError::definition(
                spec,
                "xff must be at least 0 and below 1",
            ));
        }
        if self.steps == 0 || self.rows == 0 {
            return Err(RrdError::definition(
                spec,
                "steps and rows must be at least 1",
            ));
        }
        Ok(())
    }
}

impl FromStr for RraDef {
    type Err = RrdError;

    /// Parses `RRA:CF:xff:steps:rows`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = spec.split(':').collect();
        let [tag, cf, xff, steps, rows] = parts[..] else {
            return Err(RrdError::definition(spec, "expected RRA:CF:xff:steps:rows"));
        };
        if tag != "RRA" {
            return Err(RrdError::definition(spec, "expected it to start with RRA:"));
        }
        let cf = cf
            .parse::<Cf>()
            .map_err(|reason| RrdError::definition(spec, reason))?;
        let xff = xff
            .parse::<f64>()
            .map_err(|_| RrdError::definition(spec, "xff must be a number"))?;
        let steps = steps
            .parse::<u64>()
            .map_err(|_| RrdError::definition(spec, "steps must be a whole number"))?;
        let rows = rows
            .parse::<u64>()
            .map_err(|_| RrdError::definition(spec, "rows must be a whole number"))?;
        let def = RraDef {
            cf,
            xff,
            steps,
            rows,
        };
        def.validate(spec)?;
        Ok(def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_definition_parses_unknown_bounds_as_none() {
        let ds: DsDef = "DS:net_in:DERIVE:120:0:U".parse().unwrap();
        assert_eq!(ds.name, "net_in");
        assert_eq!(ds.kind, DsType::Derive);
        assert_eq!(ds.heartbeat, 120);
        assert_eq!(ds.min, Some(0.0));
        assert_eq!(ds.max, None);
    }

    #[test]
    fn ds_definition_rejects_long_names_and_bad_types() {
        assert!("DS:abcdefghijklmnopqrst:GAUGE:1:U:U"
            .parse::<DsDef>()
            .is_err());
        assert!("DS:a:GAUGES:1:U:U".parse::<DsDef>().is_err());
        assert!("DS:a:GAUGE:1:5:1".parse::<DsDef>().is_err());
    }

    #[test]
    fn rra_definition_rejects_xff_of_one() {
        assert!("RRA:AVERAGE:1:1:10".parse::<RraDef>().is_err());
        let rra: RraDef = "RRA:MAX:0.5:30:1440".parse().unwrap();
        assert_eq!((rra.cf, rra.steps, rra.rows), (Cf::Max, 30, 1440));
    }
}
