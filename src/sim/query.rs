//! The query string and percent-encoding of a simulated API request.

use http::StatusCode;

/// The query string of a request.
pub(crate) struct Query<'a>(pub(crate) &'a str);

impl Query<'_> {
    /// The decoded value of `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.0
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value, true))
    }

    /// The value of `name` as an integer, if present.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, (StatusCode, String)> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("parameter verification failed: {name}: not an integer"),
                )
            }),
        }
    }

    /// The value of `name` as a boolean (absent: false).
    pub(crate) fn flag(&self, name: &str) -> Result<bool, (StatusCode, String)> {
        match self.get(name).as_deref() {
            None | Some("0" | "false" | "no" | "off") => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some(_) => Err((
                StatusCode::BAD_REQUEST,
                format!("parameter verification failed: {name}: not a boolean"),
            )),
        }
    }
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query strings, not
/// paths); invalid escapes stay as they are.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_plus_in_queries_only_and_broken_escapes() {
        assert_eq!(percent_decode("UPID%3Apve%3A", false), "UPID:pve:");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz", true), "%zz");
    }

    #[test]
    fn query_values_are_found_by_name() {
        let q = Query("history=1&start-time=100&flag");
        assert_eq!(q.get("start-time").as_deref(), Some("100"));
        assert_eq!(q.int("start-time").unwrap(), Some(100));
        assert!(q.flag("history").unwrap());
        assert!(!q.flag("local-only").unwrap());
        assert!(Query("since=x").int("since").is_err());
    }
}
