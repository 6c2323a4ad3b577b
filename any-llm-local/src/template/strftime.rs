//! `strftime_now(format)`: the current time formatted as Python's `datetime.strftime` does,
//! for templates that put today's date in the system prompt (Llama 3.x, Granite).
//!
//! The time is UTC: the crate has no time-zone database, and a date in a prompt needs no more.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A UTC date and time broken into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday.
    weekday: u32,
    /// 1-based day of the year.
    yday: u32,
}

impl DateTime {
    pub(crate) fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::from_unix(i64::try_from(secs).unwrap_or(0))
    }

    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let jan1 = days_from_civil(year, 1, 1);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 3).rem_euclid(7) as u32,
            yday: (days - jan1 + 1) as u32,
        }
    }

    /// Formats with the C/Python directives `%Y %y %m %d %e %j %H %I %M %S %p %A %a %B %b %h
    /// %F %T %D %%`; a `-` flag (`%-d`) drops the zero padding, as glibc allows. Unknown
    /// directives are written as they are.
    pub(crate) fn format(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut d = chars.next();
            let pad = d != Some('-');
            if !pad {
                d = chars.next();
            }
            let num = |out: &mut String, v: u32, width: usize| {
                let _ = if pad {
                    write!(out, "{v:0width$}")
                } else {
                    write!(out, "{v}")
                };
            };
            let hour12 = if self.hour.is_multiple_of(12) {
                12
            } else {
                self.hour % 12
            };
            match d {
                Some('Y') => {
                    let _ = write!(out, "{}", self.year);
                }
                Some('y') => num(&mut out, self.year.rem_euclid(100) as u32, 2),
                Some('m') => num(&mut out, self.month, 2),
                Some('d') => num(&mut out, self.day, 2),
                Some('e') => {
                    let _ = write!(out, "{:>2}", self.day);
                }
                Some('j') => num(&mut out, self.yday, 3),
                Some('H') => num(&mut out, self.hour, 2),
                Some('I') => num(&mut out, hour12, 2),
                Some('M') => num(&mut out, self.minute, 2),
                Some('S') => num(&mut out, self.second, 2),
                Some('p') => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                Some('A') => out.push_str(WEEKDAYS[self.weekday as usize]),
                Some('a') => out.push_str(&WEEKDAYS[self.weekday as usize][..3]),
                Some('B') => out.push_str(MONTHS[self.month as usize - 1]),
                Some('b' | 'h') => out.push_str(&MONTHS[self.month as usize - 1][..3]),
                Some('F') => out.push_str(&self.format("%Y-%m-%d")),
                Some('T') => out.push_str(&self.format("%H:%M:%S")),
                Some('D') => out.push_str(&self.format("%m/%d/%y")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    if !pad {
                        out.push('-');
                    }
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        // 2024-07-26 13:05:09 UTC, a Friday (Llama 3.1's default date).
        let t = DateTime::from_unix(1_721_999_109);
        assert_eq!(t.format("%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            t.format("%A, %B %-d, %Y %H:%M:%S %p %j %%"),
            "Friday, July 26, 2024 13:05:09 PM 208 %"
        );
        assert_eq!(
            DateTime::from_unix(0).format("%F %T %a"),
            "1970-01-01 00:00:00 Thu"
        );
        // A leap day before the epoch.
        assert_eq!(
            DateTime::from_unix(-2_203_891_200).format("%F"),
            "1900-03-01"
        );
        assert_eq!(DateTime::from_unix(951_782_400).format("%F"), "2000-02-29");
    }
}
