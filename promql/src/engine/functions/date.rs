//! Time-of-day functions (`year`, `month`, `day_of_month`, `day_of_week`, `day_of_year`,
//! `days_in_month`, `hour`, `minute`) in UTC: of the evaluation time without an argument,
//! of each sample's value (unix seconds) with one. Also RFC 3339 rendering for annotations.

use strata_tsdb::Labels;

use super::super::eval::{drop_name, Ctx, Evaluator, IVal};
use super::super::value::Sample;
use super::vector_arg;
use crate::error::Result;
use crate::parser::Call;

/// A broken-down UTC time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    /// 1-based.
    pub yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Unix seconds to a UTC civil time (proleptic Gregorian calendar).
pub(crate) fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut yday = day;
    for m in 1..month {
        yday += days_in_month(year, m);
    }
    Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod % 3600 / 60) as u32,
        second: (sod % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

/// Go's `time.Unix(secs, 0).UTC().Format(time.RFC3339)`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let c = civil(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn field(name: &str, c: &Civil) -> f64 {
    f64::from(match name {
        "day_of_month" => c.day,
        "day_of_week" => c.weekday,
        "day_of_year" => c.yday,
        "days_in_month" => days_in_month(c.year, c.month),
        "hour" => c.hour,
        "minute" => c.minute,
        "month" => c.month,
        _ => return c.year as f64,
    })
}

pub(super) fn call(ev: &mut Evaluator, c: &Call, ctx: &Ctx, i: usize) -> Result<IVal> {
    let name = c.func.name;
    let t = ctx.ts[i];
    let Some(arg) = c.args.first() else {
        // Go's integer division truncates toward zero.
        let cv = civil(t / 1000);
        return Ok(IVal::Vector(vec![Sample {
            metric: Labels::empty(),
            t,
            f: field(name, &cv),
        }]));
    };
    let v = vector_arg(ev, arg, ctx, i)?;
    Ok(IVal::Vector(
        v.into_iter()
            .map(|s| Sample {
                metric: drop_name(&s.metric),
                t: s.t,
                f: field(name, &civil(s.f as i64)),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let c = civil(0);
        assert_eq!(
            (c.year, c.month, c.day, c.weekday, c.yday),
            (1970, 1, 1, 4, 1)
        );
        // 2024-02-29T13:45:30Z is a Thursday, day 60.
        let c = civil(1_709_214_330);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday, c.yday),
            (2024, 2, 29, 13, 45, 30, 4, 60)
        );
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        // Before the epoch: 1969-12-31T23:59:59Z, a Wednesday.
        let c = civil(-1);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.weekday),
            (1969, 12, 31, 23, 3)
        );
        assert_eq!(rfc3339(1_709_214_330), "2024-02-29T13:45:30Z");
    }
}
