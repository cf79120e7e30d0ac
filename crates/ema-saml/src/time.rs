//! `xs:dateTime` in UTC, as SAML requires (SAML Core §1.3.3), to and from [`UnixTime`].
//!
//! The calendar arithmetic is the `time` crate's; this module fixes the accepted language:
//! `YYYY-MM-DDThh:mm:ss[.fraction]Z`, four-digit years from 1970 to 9999, UTC only.

use ema_jose::UnixTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::error::SamlError;

/// The date and time part, without fraction and zone (both handled by [`parse`] itself).
const DATE_TIME: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year padding:zero repr:full sign:automatic]-[month]-[day]T[hour]:[minute]:[second]"
);

/// Parses `YYYY-MM-DDThh:mm:ss[.fraction]Z` (UTC only; the fraction, of any length, is
/// truncated). Anything else, including other time zones, signed years, leap seconds and
/// out-of-range fields, is refused.
pub(crate) fn parse(value: &str, attribute: &'static str) -> Result<UnixTime, SamlError> {
    let bad = || SamlError::BadDateTime { attribute };
    // SAML Core §1.3.3: UTC, written `Z`; no offset, not even `+00:00`.
    let local = value.strip_suffix('Z').ok_or_else(bad)?;
    let whole = match local.split_once('.') {
        Some((whole, fraction))
            if !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            whole
        }
        Some(_) => return Err(bad()),
        None => local,
    };
    // Four digits, no sign: `time` would read a leading `+` or `-`.
    if !whole.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return Err(bad());
    }
    let secs = PrimitiveDateTime::parse(whole, DATE_TIME)
        .map_err(|_| bad())?
        .assume_utc()
        .unix_timestamp();
    // Before 1970 is negative; a four-digit year cannot pass `UnixTime::MAX`, checked anyway.
    let time = UnixTime::from_secs(u64::try_from(secs).map_err(|_| bad())?);
    if time > UnixTime::MAX {
        return Err(bad());
    }
    Ok(time)
}

/// The form [`format`] writes.
const WRITTEN: &[BorrowedFormatItem<'_>] = format_description!(
    version = 2,
    "[year padding:zero repr:full sign:automatic]-[month]-[day]T[hour]:[minute]:[second]Z"
);

/// Formats as `YYYY-MM-DDThh:mm:ssZ`; a time after [`UnixTime::MAX`] (year 9999) cannot be
/// written as four-digit year and is refused ([`SamlError::Signing`]: only the signer formats).
pub(crate) fn format(time: UnixTime) -> Result<String, SamlError> {
    if time > UnixTime::MAX {
        return Err(SamlError::Signing);
    }
    let secs = i64::try_from(time.as_secs()).map_err(|_| SamlError::Signing)?;
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(WRITTEN).ok())
        .ok_or(SamlError::Signing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_round_trips() {
        let t = parse("2026-01-01T00:00:00Z", "t").unwrap();
        assert_eq!(t.as_secs(), 1_767_225_600);
        assert_eq!(parse("2026-01-01T00:00:00.999Z", "t").unwrap(), t);
        // A fraction of any length is truncated, also beyond nanoseconds.
        assert_eq!(parse("2026-01-01T00:00:00.9999999999999Z", "t").unwrap(), t);
        assert_eq!(
            parse("2024-02-29T12:00:00Z", "t").unwrap().as_secs(),
            1_709_208_000
        );
        assert_eq!(parse("1970-01-01T00:00:00Z", "t").unwrap().as_secs(), 0);
        assert_eq!(format(t).unwrap(), "2026-01-01T00:00:00Z");
        for secs in [
            0,
            951_782_400,
            1_767_225_599,
            4_102_444_800,
            253_402_300_799,
        ] {
            let t = UnixTime::from_secs(secs);
            assert_eq!(parse(&format(t).unwrap(), "t").unwrap(), t);
        }
    }

    #[test]
    fn round_trips_across_the_whole_range() {
        // Every 37th day-minus-a-second from 1970 to 9999: all months, leap days, times of day.
        let mut count = 0;
        for secs in (0..=UnixTime::MAX.as_secs()).step_by(86_399 * 37) {
            let t = UnixTime::from_secs(secs);
            let text = format(t).unwrap();
            assert_eq!(text.len(), 20, "{text}");
            assert_eq!(parse(&text, "t").unwrap(), t, "{text}");
            count += 1;
        }
        assert!(count > 70_000);
    }

    #[test]
    fn format_refuses_times_after_the_year_9999() {
        assert_eq!(format(UnixTime::MAX).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(format(UnixTime::MAX.plus(1)), Err(SamlError::Signing));
        assert_eq!(
            format(UnixTime::from_secs(u64::MAX)),
            Err(SamlError::Signing)
        );
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:00:00.Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "1969-12-31T23:59:59Z",
            " 2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Zx",
            "+026-01-01T00:00:00Z",
            "+2026-01-01T00:00:00Z",
            "-2026-01-01T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:60:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-1-01T00:00:00Z",
            "2026-01-01t00:00:00Z",
            "2026-01-01T00:00:00z",
            "2026-01-01T00:00:00.1.2Z",
            "2026-01-01T00:00:00.1aZ",
            "2026-01-01T00:00:00+01:00",
            "2026-01-01T00:00:00-00:00",
            "2026-01-01 00:00:00Z",
            "12026-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-01-01T00:00Z",
        ] {
            assert_eq!(
                parse(bad, "t"),
                Err(SamlError::BadDateTime { attribute: "t" }),
                "{bad}"
            );
        }
    }
}
