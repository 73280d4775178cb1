//! The `%(t)s` time of an access line, `[03/Dec/2026:17:55:00 +0000]` (Apache's common log
//! format), in the machine's local time zone as gunicorn writes it.
//!
//! Owns the conversion from `SystemTime`, cached per second (the writer thread formats
//! many lines within one). Must not: be called on a connection's path.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

thread_local! {
    /// The last second formatted and its text.
    static LAST: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

pub fn push_clf_time(out: &mut String, at: SystemTime) {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    };
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, clf_time(secs));
        }
        out.push_str(&last.1);
    });
}

fn clf_time(secs: i64) -> String {
    let Some(tm) = local_time(secs) else {
        return format_time(secs, 0);
    };
    format_time(secs + tm, tm)
}

/// The local zone's offset from UTC at `secs`, in seconds.
fn local_time(secs: i64) -> Option<i64> {
    // time_t is i64 here, narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: `tm` is plain data that localtime_r fills; both pointers are valid for the
    // call, and localtime_r (unlike localtime) writes only to the buffer it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let filled = unsafe { libc::localtime_r(&t, &mut tm) };
    (!filled.is_null()).then_some(tm.tm_gmtoff)
}

/// `[dd/Mon/yyyy:HH:MM:SS +hhmm]` for `local` seconds (UTC seconds plus `offset`).
fn format_time(local: i64, offset: i64) -> String {
    let days = local.div_euclid(86_400);
    let second_of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let sign = if offset < 0 { '-' } else { '+' };
    let offset_minutes = offset.abs() / 60;
    format!(
        "[{day:02}/{}/{year:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        MONTHS[(month - 1) as usize],
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        offset_minutes / 60,
        offset_minutes % 60,
    )
}

/// Year, month (1-12) and day of the proleptic Gregorian calendar for days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_common_log_time() {
        // 2026-12-03 17:55:00 UTC
        assert_eq!(
            format_time(1_796_320_500, 0),
            "[03/Dec/2026:17:55:00 +0000]"
        );
        assert_eq!(
            format_time(1_796_320_500 - 5 * 3600 - 1800, -(5 * 3600 + 1800)),
            "[03/Dec/2026:12:25:00 -0530]"
        );
        assert_eq!(
            format_time(951_782_400, 3600),
            "[29/Feb/2000:00:00:00 +0100]"
        );
        assert_eq!(format_time(0, 0), "[01/Jan/1970:00:00:00 +0000]");
    }
}
