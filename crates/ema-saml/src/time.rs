//! `xs:dateTime` in UTC, as SAML requires (SAML Core §1.3.3), to and from [`UnixTime`].

use ema_jose::UnixTime;

use crate::error::SamlError;

/// Parses `YYYY-MM-DDThh:mm:ss[.fraction]Z` (UTC only; the fraction is truncated). Anything
/// else, including other time zones and out-of-range fields, is refused.
pub(crate) fn parse(value: &str, attribute: &'static str) -> Result<UnixTime, SamlError> {
    let bad = || SamlError::BadDateTime { attribute };
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<u64, SamlError> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| -> Result<(), SamlError> {
        if b.get(i) == Some(&c) {
            Ok(())
        } else {
            Err(bad())
        }
    };
    let year = digits(0..4)?;
    sep(4, b'-')?;
    let month = digits(5..7)?;
    sep(7, b'-')?;
    let day = digits(8..10)?;
    sep(10, b'T')?;
    let hour = digits(11..13)?;
    sep(13, b':')?;
    let minute = digits(14..16)?;
    sep(16, b':')?;
    let second = digits(17..19)?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
    }
    if b.get(i) != Some(&b'Z') || i + 1 != b.len() {
        return Err(bad());
    }
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    let time = UnixTime::from_secs(secs);
    if time > UnixTime::MAX {
        return Err(bad());
    }
    Ok(time)
}

/// Formats as `YYYY-MM-DDThh:mm:ssZ`; a time after [`UnixTime::MAX`] (year 9999) cannot be
/// written as four-digit year and is refused ([`SamlError::Signing`]: only the signer formats).
pub(crate) fn format(time: UnixTime) -> Result<String, SamlError> {
    if time > UnixTime::MAX {
        return Err(SamlError::Signing);
    }
    let secs = time.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date with `year >= 1970`.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let before_years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let before_months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    before_years + before_months + day - 1
}

fn civil_from_days(mut days: u64) -> (u64, u64, u64) {
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    (year, month, days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_round_trips() {
        let t = parse("2026-01-01T00:00:00Z", "t").unwrap();
        assert_eq!(t.as_secs(), 1_767_225_600);
        assert_eq!(parse("2026-01-01T00:00:00.999Z", "t").unwrap(), t);
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
        ] {
            assert_eq!(
                parse(bad, "t"),
                Err(SamlError::BadDateTime { attribute: "t" }),
                "{bad}"
            );
        }
    }
}
