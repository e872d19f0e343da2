//! # pcpu-lab
//!
//! The policy lab: synthetic workloads, parameter sweeps and "who pins my
//! memory" reports over the percpu allocator, and the reproducible policy
//! study (`pcpu study`) that answers the open questions of the seed thread
//! ("[PATCH rfc 3/4] percpu: on demand chunk depopulation").
//!
//! * [`gen`] — workload generators (the cover letter's cgroups, steady
//!   churn, BPF-like large objects, mixes) producing ftrace records, so that
//!   synthetic and real traces take one path.
//! * [`run`] — one replay with the lab's metrics (resident memory, floor,
//!   ideal, page traffic, thrash, balance runs, wall time), balance
//!   schedules, and a parallel runner.
//! * [`sweep`] — parameter grids over depopulation knobs, balance schedules
//!   and placement classes.
//! * [`pins`] — which call sites and tasks keep pages resident.
//! * [`plot`] — SVG charts (shared with the `pcpu` command).
//! * [`study`] — the study: runs everything and writes `policy-study.md`.
//! * [`targets`] — the `pcpu` policy's targets against linux-5.14, also
//!   over other seeds of the synthetic workloads.
//!
//! ```
//! use pcpu_lab::gen::CoverLetter;
//! use pcpu_lab::run::{run, Input, RunOptions, Variant};
//!
//! let trace = CoverLetter { parents: 20, children: 4, ..CoverLetter::default() }.generate();
//! let input = Input::synthetic(&trace).unwrap();
//! let r = run(&input, &Variant::new("5.14", "linux-5.14".parse().unwrap()), &RunOptions::default()).unwrap();
//! assert!(r.phase("C").unwrap().percpu_kb <= r.phase("B").unwrap().percpu_kb);
//! ```
#![forbid(unsafe_code)]

pub mod gen;
pub mod pins;
pub mod plot;
pub mod rng;
pub mod run;
pub mod study;
pub mod sweep;
pub mod targets;

pub use run::LabError;
