//! `Range` requests served from a cached body (RFC 9110 §14). Only single ranges are honoured:
//! a multi-range request gets the whole body (200), which is allowed and avoids amplification.

/// How to answer a GET for a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No (usable) range: 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Evaluates a `Range` header value against a body of `len` bytes.
///
/// Units other than `bytes` are ignored (200). A malformed `bytes` range or one that starts
/// beyond the end is unsatisfiable (416).
pub fn evaluate(header: Option<&[u8]>, len: u64) -> RangeOutcome {
    let Some(raw) = header else {
        return RangeOutcome::Full;
    };
    let Ok(value) = std::str::from_utf8(raw) else {
        return RangeOutcome::Unsatisfiable;
    };
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return RangeOutcome::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeOutcome::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = specs.next() else {
        return RangeOutcome::Unsatisfiable;
    };
    if specs.next().is_some() {
        return RangeOutcome::Full;
    }
    single(first, len)
}

fn single(spec: &str, len: u64) -> RangeOutcome {
    let Some((a, b)) = spec.split_once('-') else {
        return RangeOutcome::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    match (number(a), number(b)) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                RangeOutcome::Unsatisfiable
            } else {
                RangeOutcome::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        // bytes=A-
        (Some(start), None) if b.is_empty() => {
            if start >= len {
                RangeOutcome::Unsatisfiable
            } else {
                RangeOutcome::Partial {
                    start,
                    end: len - 1,
                }
            }
        }
        // bytes=A-B
        (Some(start), Some(end)) => {
            if start > end || start >= len {
                RangeOutcome::Unsatisfiable
            } else {
                RangeOutcome::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        _ => RangeOutcome::Unsatisfiable,
    }
}

/// 1*DIGIT; numbers too large for u64 saturate (they mean "to the end").
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// `Content-Range` for a partial answer.
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// A `Content-Range: bytes A-B/LEN` from a 206: `(A, B, LEN)`; `None` for anything else
/// (`*` lengths included: a slice needs the object's length).
pub fn parse_content_range(v: &[u8]) -> Option<(u64, u64, u64)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let rest = s.strip_prefix("bytes")?.trim_start();
    let (span, len) = rest.split_once('/')?;
    let (a, b) = span.trim().split_once('-')?;
    let (a, b, len) = (number(a.trim())?, number(b.trim())?, number(len.trim())?);
    (a <= b && b < len).then_some((a, b, len))
}

/// `Content-Range` for a 416 answer.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    fn eval(h: &str, len: u64) -> RangeOutcome {
        evaluate(Some(h.as_bytes()), len)
    }

    #[test]
    fn no_header_is_full() {
        assert_eq!(evaluate(None, 10), Full);
    }

    #[test]
    fn single_ranges() {
        assert_eq!(eval("bytes=0-0", 10), Partial { start: 0, end: 0 });
        assert_eq!(eval("bytes=0-9", 10), Partial { start: 0, end: 9 });
        assert_eq!(eval("bytes=2-5", 10), Partial { start: 2, end: 5 });
        assert_eq!(eval("bytes=5-100", 10), Partial { start: 5, end: 9 });
        assert_eq!(eval("bytes=5-", 10), Partial { start: 5, end: 9 });
        assert_eq!(eval("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(eval("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(eval(" Bytes = 1 - 2 ", 10), Partial { start: 1, end: 2 });
        assert_eq!(eval("bytes=1-2,", 10), Partial { start: 1, end: 2 });
        assert_eq!(
            eval("bytes=0-99999999999999999999999", 10),
            Partial { start: 0, end: 9 }
        );
    }

    #[test]
    fn unsatisfiable_and_malformed() {
        for h in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=5-4",
            "bytes=-0",
            "bytes=",
            "bytes=abc",
            "bytes=1-x",
            "bytes=--1",
            "bytes=-",
            "bytes=+1-2",
            "bytes",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(eval(h, 10), Unsatisfiable, "{h:?}");
        }
        assert_eq!(eval("bytes=0-", 0), Unsatisfiable);
        assert_eq!(eval("bytes=-1", 0), Unsatisfiable);
        assert_eq!(evaluate(Some(&[0xff, 0xfe]), 10), Unsatisfiable);
    }

    #[test]
    fn other_units_and_multi_ranges_get_the_whole_body() {
        assert_eq!(eval("items=0-5", 10), Full);
        assert_eq!(eval("bytes=0-1,3-4", 10), Full);
        assert_eq!(eval("bytes=0-1, 20-30", 10), Full);
    }

    #[test]
    fn content_ranges_from_the_origin() {
        assert_eq!(parse_content_range(b"bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range(b"bytes 5-5/6"), Some((5, 5, 6)));
        for bad in [
            &b"bytes 0-9/*"[..],
            b"bytes */100",
            b"bytes 9-0/100",
            b"bytes 0-100/100",
            b"items 0-1/2",
            b"bytes 0-x/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(content_range(0, 9, 10), "bytes 0-9/10");
        assert_eq!(unsatisfied_range(10), "bytes */10");
    }
}
