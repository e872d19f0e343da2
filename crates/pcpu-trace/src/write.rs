//! Writing records back as ftrace text (for synthetic workload generators).
//!
//! The output is the Linux 6.x text layout that [`crate::open_trace`] reads back; records
//! round-trip exactly (apart from [`Record::line`], which is the position in the new file)
//! as long as timestamps have at most microsecond resolution, task names do not start with
//! whitespace or contain line breaks, and [`Event::Marker`] texts do not themselves look
//! like `PHASE <name> begin` / `PHASE <name> Percpu: <n> kB` markers.
//!
//! [`Event::Marker`]: crate::Event::Marker

use std::io::{self, Write};

use crate::event::Record;

/// Writes the `# tracer: nop` header block that a 6.x kernel prints above the events.
/// `entries` fills the `entries-in-buffer/entries-written` line (both the same, i.e. no lost
/// events); `nr_cpus` the `#P:` field.
pub fn write_header<W: Write>(w: &mut W, entries: u64, nr_cpus: u32) -> io::Result<()> {
    write!(
        w,
        "# tracer: nop\n\
         #\n\
         # entries-in-buffer/entries-written: {entries}/{entries}   #P:{nr_cpus}\n\
         #\n\
         #                                _-----=> irqs-off/BH-disabled\n\
         #                               / _----=> need-resched\n\
         #                              | / _---=> hardirq/softirq\n\
         #                              || / _--=> preempt-depth\n\
         #                              ||| / _-=> migrate-disable\n\
         #                              |||| /     delay\n\
         #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n\
         #              | |         |   |||||     |         |\n"
    )
}

/// Writes one record as a line of ftrace text, with its newline.
pub fn write_record<W: Write>(w: &mut W, record: &Record) -> io::Result<()> {
    write_record_with(w, record, &mut Vec::new())
}

/// [`write_record`], formatting the line in `buf` (cleared first; keep it
/// between calls to save its allocation).
pub fn write_record_with<W: Write>(
    w: &mut W,
    record: &Record,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    crate::line::format_record(buf, record);
    w.write_all(buf)
}

/// Writes a complete trace: the header (with `nr_cpus`) and every record.
pub fn write_trace<W: Write>(w: &mut W, nr_cpus: u32, records: &[Record]) -> io::Result<()> {
    write_header(w, records.len() as u64, nr_cpus)?;
    let mut buf = Vec::new();
    for r in records {
        write_record_with(w, r, &mut buf)?;
    }
    Ok(())
}
