//! `valgrind.supp` names source lines of `src/handle.rs`: they must still be
//! the loads of `copy_is_zero`, else the suppressions silently stop
//! matching (or match something else).

use std::path::Path;

#[test]
fn the_valgrind_suppressions_name_copy_is_zeros_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let supp = std::fs::read_to_string(dir.join("valgrind.supp")).expect("valgrind.supp");
    let handle = std::fs::read_to_string(dir.join("src/handle.rs")).expect("src/handle.rs");
    let lines: Vec<&str> = handle.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("unsafe fn copy_is_zero("))
        .expect("copy_is_zero in handle.rs");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == "}")
            .expect("end of copy_is_zero");
    let mut named = 0;
    for entry in supp.lines().filter_map(|l| l.trim().strip_prefix("src:")) {
        let (file, line) = entry.split_once(':').expect("src:FILE:LINE");
        assert_eq!(file, "handle.rs", "{entry}");
        let n: usize = line.parse().expect("a line number");
        let text = lines.get(n - 1).copied().unwrap_or("");
        assert!(
            (start..end).contains(&(n - 1))
                && (text.contains("load_u64(") || text.contains("load_u8(")),
            "valgrind.supp names handle.rs:{n}, which is not a load of copy_is_zero: {text:?}"
        );
        named += 1;
    }
    assert_eq!(named, 2, "the word and the byte load");
}
