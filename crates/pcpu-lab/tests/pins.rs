//! "Who pins my memory" on a trace with a known answer.

use pcpu_core::{Policy, PolicyKind};
use pcpu_lab::gen::{Builder, CoverLetter, Machine, Site};
use pcpu_lab::pins::{self, PinRow};
use pcpu_lab::run::{Input, Variant};
use pcpu_replay::{ClassMode, ReplayConfig};

const KEEP: Site = Site::new("keep_site+0x10/0x40", 1024, 8);
const TEMP: Site = Site::new("temp_site+0x22/0x40", 1024, 8);

/// Six pages of the first chunk, four 1 KiB objects each; then every page
/// keeps only its first object (`keep_site`, task `alpha`), except page 0,
/// which also keeps its second (`temp_site`, task `beta`).
fn known() -> Input {
    let mut b = Builder::new(Machine::default(), 5, "pins known answer");
    let alpha = b.process("alpha");
    let beta = b.process("beta");
    let mut temps = Vec::new();
    for i in 0..24 {
        if i % 4 == 0 {
            b.alloc(&alpha, KEEP);
        } else {
            temps.push(b.alloc(&beta, TEMP));
        }
    }
    for &t in &temps[1..] {
        b.free(&beta, t);
    }
    b.phase("X");
    Input::synthetic(&b.finish("known")).unwrap()
}

fn cfg(policy: Policy) -> ReplayConfig {
    ReplayConfig {
        policy,
        classes: ClassMode::None,
        ..ReplayConfig::default()
    }
}

fn row<'a>(rows: &'a [PinRow], owner: &str) -> &'a PinRow {
    rows.iter()
        .find(|r| r.owner.starts_with(owner))
        .unwrap_or_else(|| panic!("{owner} not in {rows:?}"))
}

#[test]
fn one_survivor_per_page_pins_the_page() {
    let input = known();
    let r = pins::pins_at(&input, "X", cfg(Policy::new(PolicyKind::Linux61))).unwrap();
    let keep = row(&r.by_call_site, "keep_site");
    assert_eq!(
        (
            keep.objects,
            keep.bytes,
            keep.pages_touched,
            keep.pages_pinned
        ),
        (6, 6 * 1024, 6, 5)
    );
    assert!((keep.share_pages - 5.5).abs() < 1e-9, "{keep:?}");
    let temp = row(&r.by_call_site, "temp_site");
    assert_eq!(
        (
            temp.objects,
            temp.bytes,
            temp.pages_touched,
            temp.pages_pinned
        ),
        (1, 1024, 1, 0)
    );
    assert!((temp.share_pages - 0.5).abs() < 1e-9);
    // Most pinned first.
    assert_eq!(r.by_call_site[0].owner, "keep_site");
    // Tasks: the same split.
    let alpha = row(&r.by_task, "alpha-");
    assert_eq!((alpha.pages_touched, alpha.pages_pinned), (6, 5));
    let beta = row(&r.by_task, "beta-");
    assert_eq!((beta.pages_touched, beta.pages_pinned), (1, 0));
    assert_eq!(r.used_pages, 6);
    assert_eq!(r.live_objects, 7);
    assert_eq!(r.live_bytes, 7 * 1024);
    // Shares add up to the pages holding live objects.
    let total: f64 = r.by_call_site.iter().map(|x| x.share_pages).sum();
    assert!((total - 6.0).abs() < 1e-9);
    assert_eq!(
        r.resident_pages,
        r.static_pages + r.used_pages + r.empty_pages,
        "{r:?}"
    );
    let text = pins::render(&r, 5, pins::PinOrder::Pinned);
    assert!(
        text.contains("Top 2 of 2 call sites by pinned pages"),
        "{text}"
    );
    assert!(text.contains("keep_site"));
}

#[test]
fn unknown_phase_names_the_phases() {
    let e = pins::pins_at(&known(), "nope", cfg(Policy::default())).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no phase `nope`") && msg.contains("X"),
        "{msg}"
    );
}

#[test]
fn surviving_cgroups_pin_pages_and_lifetime_classes_unpin_them() {
    let input = Input::synthetic(
        &CoverLetter {
            parents: 100,
            children: 10,
            ..CoverLetter::default()
        }
        .generate(),
    )
    .unwrap();
    let l514 = Policy::new(PolicyKind::Linux514);
    let ff = pins::pins_for(&input, "C", &Variant::new("ff", l514)).unwrap();
    let mut lt_policy = l514;
    lt_policy.class_placement = true;
    let lt = pins::pins_for(
        &input,
        "C",
        &Variant {
            classes: ClassMode::Derived,
            ..Variant::new("lt", lt_policy)
        },
    )
    .unwrap();
    assert_eq!(ff.classes, "first fit");
    assert_eq!(lt.classes, "lifetime classes");
    assert_eq!(ff.live_objects, lt.live_objects);
    // First fit scatters each surviving cgroup; lifetime classes pack them.
    assert!(
        lt.used_pages * 2 < ff.used_pages,
        "{} {}",
        lt.used_pages,
        ff.used_pages
    );
    let mkdirs = ff
        .by_task
        .iter()
        .filter(|t| t.owner.starts_with("mkdir-"))
        .count();
    assert_eq!(mkdirs, 100);
}
