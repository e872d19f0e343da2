//! Whether the kernel runs with strict overcommit accounting
//! (`vm.overcommit_memory = 2`), from `/proc/sys/vm/overcommit_memory`.
//!
//! Under strict accounting `MAP_NORESERVE` is ignored: a private writable
//! mapping is charged against the commit limit in full when it is made,
//! while a `PROT_NONE` one is charged nothing until `mprotect` makes a part
//! of it writable. A chunk mapped read-write from the start (the crate's
//! default without guard pages) would charge every page of every unit, so
//! [`Builder::build`](crate::Builder::build) turns guard pages on under
//! strict accounting unless the user chose.

/// `/proc/sys/vm/overcommit_memory` says 2 (strict). False when the file
/// cannot be read (no `/proc`) or holds anything else.
pub(crate) fn strict() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|s| is_strict(&s))
}

/// The file's contents `s` name strict accounting.
fn is_strict(s: &str) -> bool {
    s.trim() == "2"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mode_2_is_strict() {
        assert!(is_strict("2\n"));
        assert!(is_strict("2"));
        for s in ["0\n", "1\n", "", "22\n", "x"] {
            assert!(!is_strict(s), "{s:?}");
        }
    }

    #[test]
    fn reads_this_machine() {
        // Agrees with the file where there is one.
        if let Ok(s) = std::fs::read_to_string("/proc/sys/vm/overcommit_memory") {
            assert_eq!(strict(), is_strict(&s));
        }
    }
}
