//! One record as a line of ftrace text, formatted by hand: the bytes that
//! `Record`'s `Display` prints, with its newline, at a fraction of the cost
//! (the userspace allocator's trace writes one such line per allocation and
//! free; std formatting of the padded hex, the timestamp's `f64` and the
//! `write!` machinery cost about 6,400 instructions an event).
//!
//! Only the hot events (an allocation, a free) and the common columns are
//! formatted here; anything else, and any timestamp whose correctly rounded
//! microsecond this cannot vouch for, goes through `Display`.

use std::io::Write as _;

use crate::event::{AllocEvent, Event, Record};

/// Appends `record` as one line of ftrace text, newline included, to `out`:
/// exactly `format!("{record}\n")`.
pub fn format_record(out: &mut Vec<u8>, record: &Record) {
    let start = out.len();
    if !format_fast(out, record) {
        out.truncate(start);
        // Writing into a Vec cannot fail.
        let _ = writeln!(out, "{record}");
    }
}

/// The fast path; `false` (nothing written) where it does not apply.
fn format_fast(out: &mut Vec<u8>, r: &Record) -> bool {
    if !matches!(r.event, Event::Alloc(_) | Event::Free { .. }) {
        return false;
    }
    let Some(micros) = micros(r.ts) else {
        return false;
    };
    // `{:>16}-{:<7} [{:03}] `: widths count characters.
    pad_left(out, &r.task, 16);
    out.push(b'-');
    let pid_at = out.len();
    decimal_i64(out, i64::from(r.pid));
    let width = out.len() - pid_at;
    out.resize(out.len() + 7usize.saturating_sub(width), b' ');
    out.extend_from_slice(b" [");
    let mut buf = [0u8; 20];
    let cpu = digits_of(u64::from(r.cpu), &mut buf);
    out.resize(out.len() + 3usize.saturating_sub(cpu.len()), b'0');
    out.extend_from_slice(cpu);
    out.extend_from_slice(b"] ");
    if let Some(flags) = &r.flags {
        out.extend_from_slice(flags.as_str().as_bytes());
        out.push(b' ');
    }
    // `{:>12.6}`: seconds, a point, six digits of microseconds.
    let secs = digits_of(micros / 1_000_000, &mut buf);
    out.resize(out.len() + 12usize.saturating_sub(secs.len() + 7), b' ');
    out.extend_from_slice(secs);
    out.push(b'.');
    let mut frac = [b'0'; 6];
    let mut f = micros % 1_000_000;
    for d in frac.iter_mut().rev() {
        *d = b'0' + (f % 10) as u8;
        f /= 10;
    }
    out.extend_from_slice(&frac);
    out.extend_from_slice(b": ");
    out.extend_from_slice(r.event.kind().ftrace_event().as_bytes());
    out.extend_from_slice(b": ");
    match &r.event {
        Event::Alloc(a) => alloc_payload(out, a),
        Event::Free {
            base_addr,
            off,
            ptr,
        } => {
            out.extend_from_slice(b"base_addr=");
            hex16(out, *base_addr);
            out.extend_from_slice(b" off=");
            decimal_u64(out, *off);
            out.extend_from_slice(b" ptr=");
            hex16(out, *ptr);
        }
        // Refused above.
        _ => return false,
    }
    out.push(b'\n');
    true
}

/// `Event::Alloc`'s payload, as its `Display` prints it.
fn alloc_payload(out: &mut Vec<u8>, a: &AllocEvent) {
    if let Some(cs) = &a.call_site {
        out.extend_from_slice(b"call_site=");
        out.extend_from_slice(cs.as_str().as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(b"reserved=");
    out.push(b'0' + u8::from(a.reserved));
    out.extend_from_slice(b" is_atomic=");
    out.push(b'0' + u8::from(a.is_atomic));
    out.extend_from_slice(b" size=");
    decimal_u64(out, a.size);
    out.extend_from_slice(b" align=");
    decimal_u64(out, a.align);
    out.extend_from_slice(b" base_addr=");
    hex16(out, a.base_addr);
    out.extend_from_slice(b" off=");
    decimal_u64(out, a.off);
    out.extend_from_slice(b" ptr=");
    hex16(out, a.ptr);
    if let Some(b) = a.bytes_alloc {
        out.extend_from_slice(b" bytes_alloc=");
        decimal_u64(out, b);
    }
    if let Some(g) = &a.gfp_flags {
        out.extend_from_slice(b" gfp_flags=");
        out.extend_from_slice(g.as_bytes());
    }
}

/// `ts` in whole microseconds as `{:.6}` rounds it (to the nearest, the
/// exact binary value's decimal expansion deciding), or `None` where the
/// product by 10^6 could round the other way: a value within its error of
/// a half microsecond, a negative one (-0 too: std prints its sign), a
/// non-finite one, or one past 2^53
/// microseconds.
fn micros(ts: f64) -> Option<u64> {
    if !ts.is_finite() || ts.is_sign_negative() {
        return None;
    }
    let x = ts * 1e6;
    if x >= 9_007_199_254_740_992.0 {
        return None;
    }
    // The product is within half an ulp of the exact ts * 10^6; four
    // epsilons of it cover that with room.
    let frac = x - x.floor();
    if (frac - 0.5).abs() <= x * 4.0 * f64::EPSILON + f64::MIN_POSITIVE {
        return None;
    }
    Some(x.round() as u64)
}

/// Right-aligns `s` in `width` characters.
fn pad_left(out: &mut Vec<u8>, s: &str, width: usize) {
    let chars = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    out.resize(out.len() + width.saturating_sub(chars), b' ');
    out.extend_from_slice(s.as_bytes());
}

/// `v`'s decimal digits, at the end of `buf`.
fn digits_of(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

fn decimal_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(digits_of(v, &mut buf));
}

fn decimal_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    decimal_u64(out, v.unsigned_abs());
}

/// `{:016x}`.
fn hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CallSite;
    use std::sync::Arc;

    fn rec(ts: f64, event: Event) -> Record {
        Record {
            line: 0,
            task: Arc::from("worker-1"),
            pid: 4001,
            cpu: 2,
            flags: None,
            ts,
            event,
        }
    }

    fn same(r: &Record) {
        let mut out = Vec::new();
        format_record(&mut out, r);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{r}\n"));
    }

    #[test]
    fn timestamps_round_as_std_does() {
        let free = Event::Free {
            base_addr: 0xffff_e8ff_ffc0_0000,
            off: 8,
            ptr: 0x1234,
        };
        for ts in [
            0.0,
            1e-7,
            4.9999e-7,
            5e-7,
            1.5e-6,
            2.5e-6,
            0.1,
            0.123_456_5,
            67.142_278,
            123_456.789_012_5,
            1e9 + 0.000_000_5,
            1e12,
            9e15,
            -1.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
        ] {
            same(&rec(ts, free.clone()));
        }
        // Every 7-digit fraction of a second near the half microsecond.
        for i in 0..200_000u64 {
            same(&rec(i as f64 * 1e-7 + 3.0, free.clone()));
        }
    }

    #[test]
    fn the_columns_pad_as_std_does() {
        let alloc = Event::Alloc(AllocEvent {
            call_site: Some(CallSite(Arc::from("src/main.rs:12:5"))),
            reserved: true,
            is_atomic: false,
            size: 8,
            align: 8,
            base_addr: 1,
            off: 0,
            ptr: u64::MAX,
            bytes_alloc: Some(32),
            gfp_flags: Some(Arc::from("GFP_KERNEL")),
        });
        for (task, pid, cpu) in [
            ("", 0, 0),
            ("a-very-long-task-name-indeed", -12, 12345),
            ("naïve", i32::MIN, u32::MAX),
            ("t", i32::MAX, 7),
        ] {
            let r = Record {
                task: Arc::from(task),
                pid,
                cpu,
                ..rec(1.5, alloc.clone())
            };
            same(&r);
        }
    }
}
