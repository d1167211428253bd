//! A fast path for the metric reply: a byte scanner for the shape PVE and PBS actually
//! send (one `data` member; points of exactly the five members, in any order; ASCII
//! strings without escapes; JSON numbers). It gives up on anything else — an escape, an
//! unknown member, `null`, a syntax error — and the caller then parses the whole reply
//! with the serde parser, which is the reference and produces the error messages.

use std::borrow::Cow;

use fleetpoll_actors::MetricKind;

use super::metrics::Builder;

/// Scans `body` into `builder`; `None` if the reply is not in the canonical shape (the
/// builder is then partly filled and must be discarded).
pub(crate) fn scan<'de>(body: &'de [u8], builder: &mut Builder<'de>) -> Option<()> {
    let mut s = Scanner { body, pos: 0 };
    s.expect(b'{')?;
    if s.string()? != "data" {
        return None;
    }
    s.expect(b':')?;
    s.expect(b'[')?;
    if s.peek()? == b']' {
        s.pos += 1;
    } else {
        loop {
            s.point(builder)?;
            match s.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    s.expect(b'}')?;
    s.skip_ws();
    (s.pos == body.len()).then_some(())
}

struct Scanner<'de> {
    body: &'de [u8],
    pos: usize,
}

impl<'de> Scanner<'de> {
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.body.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next non-blank byte, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.body.get(self.pos).copied()
    }

    /// The next non-blank byte, consumed.
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    #[inline]
    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// A string of printable ASCII without escapes, as text.
    #[inline]
    fn string(&mut self) -> Option<&'de str> {
        // Printable ASCII is valid UTF-8.
        std::str::from_utf8(self.ascii()?).ok()
    }

    /// A string of printable ASCII without escapes, as its bytes (member names and the
    /// type are only compared: no UTF-8 check needed).
    #[inline]
    fn ascii(&mut self) -> Option<&'de [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        let rest = &self.body[start..];
        let len = rest.iter().position(|&b| b == b'"')?;
        let text = &rest[..len];
        if text
            .iter()
            .any(|&b| !(0x20..0x7f).contains(&b) || b == b'\\')
        {
            return None;
        }
        self.pos = start + len + 1;
        Some(text)
    }

    /// The text of a number in strict JSON syntax:
    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`.
    #[inline]
    fn number(&mut self) -> Option<&'de str> {
        self.skip_ws();
        let start = self.pos;
        let b = self.body;
        let digits = |pos: &mut usize| {
            let from = *pos;
            while b.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos > from
        };
        let mut pos = start;
        if b.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match b.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return None,
        }
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            if !digits(&mut pos) {
                return None;
            }
        }
        if matches!(b.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(b.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if !digits(&mut pos) {
                return None;
            }
        }
        self.pos = pos;
        std::str::from_utf8(&b[start..pos]).ok()
    }

    /// One point object, pushed into the builder.
    fn point(&mut self, builder: &mut Builder<'de>) -> Option<()> {
        self.expect(b'{')?;
        let mut timestamp = None;
        let mut id = None;
        let mut metric = None;
        let mut value = None;
        let mut kind = None;
        loop {
            let key = self.ascii()?;
            self.expect(b':')?;
            let fresh = match key {
                b"timestamp" => timestamp.replace(self.number()?.parse::<i64>().ok()?),
                b"value" => value
                    .replace(self.number()?.parse::<f64>().ok()?)
                    .map(|_| 0),
                b"id" => id.replace(self.string()?).map(|_| 0),
                b"metric" => metric.replace(self.string()?).map(|_| 0),
                b"type" => kind
                    .replace(match self.ascii()? {
                        b"gauge" => MetricKind::Gauge,
                        b"derive" => MetricKind::Derive,
                        b"counter" => MetricKind::Counter,
                        _ => return None,
                    })
                    .map(|_| 0),
                _ => return None,
            };
            if fresh.is_some() {
                // A member given twice: leave it to the reference parser.
                return None;
            }
            match self.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        builder.push(
            Cow::Borrowed(id?),
            Cow::Borrowed(metric?),
            kind?,
            timestamp?,
            value.filter(|v| v.is_finite())?,
        );
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use fleetpoll_actors::{ErrorClass, RemoteId};

    use crate::remote::metrics::{parse_metric_reply, parse_with_serde, scanned};
    use crate::sim::metrics::metric_reply;
    use crate::sim::SimConfig;

    const NOW: i64 = 1_750_000_000;

    #[test]
    fn simulated_replies_scan_to_the_reference_parsers_batch() {
        let config = SimConfig::default();
        let remote = RemoteId::new("r");
        for id in ["pve-1", "pbs-1"] {
            let body = metric_reply(&config, id, NOW, true, None).unwrap();
            let fast = scanned(&body, NOW).expect("the canonical shape scans");
            assert_eq!(fast, parse_with_serde(&remote, &body, NOW).unwrap());
            assert!(fast.len() > 1000);
        }
    }

    #[test]
    fn unusual_but_valid_replies_fall_back_to_the_same_result() {
        let remote = RemoteId::new("r");
        let p = r#""timestamp":1,"id":"a","metric":"m","value":2.5"#;
        for body in [
            format!(r#"{{"data":[{{{p},"type":"gauge","unit":"x"}}]}}"#),
            format!(r#"{{"data":[{{{p},"type":"gauge"}}],"extra":1}}"#),
            r#"{"data":[{"timestamp":1,"id":"\u0061","metric":"m","value":2,"type":"gauge"}]}"#
                .to_string(),
            r#"{"data":[{"timestamp":1,"id":"é","metric":"m","value":2,"type":"gauge"}]}"#
                .to_string(),
            r#"{"data":null}"#.to_string(),
            // The reference parser lets the last of a repeated member win.
            r#"{"data":[{"timestamp":1,"timestamp":2,"id":"a","metric":"m","value":1,"type":"gauge"}]}"#
                .to_string(),
        ] {
            assert!(scanned(body.as_bytes(), NOW).is_none(), "{body}");
            assert_eq!(
                parse_metric_reply(&remote, body.as_bytes(), NOW).unwrap(),
                parse_with_serde(&remote, body.as_bytes(), NOW).unwrap(),
                "{body}"
            );
        }
    }

    #[test]
    fn blanks_and_member_order_do_not_leave_the_fast_path() {
        let body = b" {\n \"data\" : [ {\"type\":\"derive\", \"value\" : -1.5e3 ,\"metric\":\"m\",\"id\":\"a\",\"timestamp\":-7} ,\n{\"id\":\"a\",\"metric\":\"m\",\"type\":\"derive\",\"timestamp\":0,\"value\":0} ] } \n";
        let fast = scanned(body, NOW).expect("scans");
        assert_eq!(
            fast,
            parse_with_serde(&RemoteId::new("r"), body, NOW).unwrap()
        );
        assert_eq!(fast.points[0].value, -1500.0);
        assert_eq!(fast.series.len(), 1);
    }

    #[test]
    fn what_json_forbids_is_rejected_like_the_reference_parser_does() {
        let remote = RemoteId::new("r");
        for value in [
            "01", "1.", ".5", "+1", "1e", "-", "NaN", "inf", "1e400", "null", "\"1\"",
        ] {
            let body = format!(
                r#"{{"data":[{{"timestamp":1,"id":"a","metric":"m","value":{value},"type":"gauge"}}]}}"#
            );
            assert!(scanned(body.as_bytes(), NOW).is_none(), "{value}");
            let err = parse_metric_reply(&remote, body.as_bytes(), NOW).unwrap_err();
            assert_eq!(err.class, ErrorClass::BadReply, "{value}");
        }
        for body in [
            r#"{"data":[{"timestamp":1.5,"id":"a","metric":"m","value":1,"type":"gauge"}]}"#,
            r#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":1,"type":"gauge"},]}"#,
            r#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":1,"type":"gauge"}]}x"#,
            r#"{"data":[{"timestamp":1,"id":"a","metric":"m","value":1}]}"#,
        ] {
            assert!(scanned(body.as_bytes(), NOW).is_none(), "{body}");
            assert!(
                parse_metric_reply(&remote, body.as_bytes(), NOW).is_err(),
                "{body}"
            );
        }
    }
}
