//! The study's inputs: the synthetic workloads at each [`Scale`] and the
//! real captures that are present, as [`Subject`]s.

use super::subjects::{subject, Subject};
use super::{is_capture, Scale, StudyConfig};
use crate::gen::{Churn, CoverLetter, LargeObjects, Mix, SyntheticTrace, Workers};
use crate::run::{Input, LabError};

/// The synthetic workloads at `scale`, with the generators' default seed.
pub fn workloads(scale: Scale) -> Vec<SyntheticTrace> {
    workloads_seeded(scale, CoverLetter::default().seed)
}

/// The synthetic workloads at `scale`, every generator seeded with `seed`.
pub fn workloads_seeded(scale: Scale, seed: u64) -> Vec<SyntheticTrace> {
    match scale {
        Scale::Full => vec![
            CoverLetter {
                seed,
                ..CoverLetter::default()
            }
            .generate(),
            Churn {
                seed,
                ..Churn::default()
            }
            .generate(),
            LargeObjects {
                seed,
                ..LargeObjects::default()
            }
            .generate(),
            Mix {
                seed,
                ..Mix::default()
            }
            .generate(),
            Workers {
                seed,
                ..workers(scale)
            }
            .generate(),
        ],
        Scale::Small => vec![
            CoverLetter {
                parents: 40,
                children: 5,
                seed,
                ..CoverLetter::default()
            }
            .generate(),
            Churn {
                rounds: 3,
                per_round: 120,
                seed,
                ..Churn::default()
            }
            .generate(),
            LargeObjects {
                rounds: 2,
                apps_per_round: 25,
                seed,
                ..LargeObjects::default()
            }
            .generate(),
            Mix {
                rounds: 2,
                groups_per_round: 100,
                apps_per_round: 8,
                seed,
                ..Mix::default()
            }
            .generate(),
            Workers {
                seed,
                ..workers(scale)
            }
            .generate(),
        ],
    }
}

/// The `workers` generator at `scale` (seed 1).
pub(super) fn workers(scale: Scale) -> Workers {
    match scale {
        Scale::Full => Workers::default(),
        Scale::Small => Workers {
            rounds: 2,
            sessions: 300,
            ..Workers::default()
        },
    }
}

/// Loads the inputs: synthetic workloads, then the captures that exist.
pub(super) fn load(
    cfg: &StudyConfig,
    progress: &(dyn Fn(&str) + Sync),
    notes: &mut Vec<String>,
) -> Result<(Vec<Subject>, Vec<Vec<String>>), LabError> {
    progress("generating workloads");
    let mut subjects = Vec::new();
    let mut rows = Vec::new();
    let short_syn = ["cover letter", "churn", "bpf maps", "mix", "workers"];
    for (t, short) in workloads(cfg.scale).iter().zip(short_syn) {
        rows.push(vec![
            format!("{short} (syn)"),
            format!("`{}`", t.name),
            t.allocs().to_string(),
            format!("`{}`", t.params),
        ]);
        subjects.push(subject(Input::synthetic(t)?, format!("{short} (syn)")));
    }
    for path in &cfg.captures {
        if !is_capture(path) {
            notes.push(format!(
                "capture `{}` not found: skipped (pass its folder with --capture)",
                path.display()
            ));
            continue;
        }
        progress(&format!("loading {}", path.display()));
        let input = Input::open(path)?;
        let short = if input.name.contains("churn") {
            "churn (real)".to_string()
        } else if input.name.contains("1000x10") {
            "cover letter (real)".to_string()
        } else {
            format!("{} (real)", input.name)
        };
        let allocs = input
            .records
            .iter()
            .filter(|r| matches!(r.event, pcpu_trace::Event::Alloc(_)))
            .count();
        rows.push(vec![
            short.clone(),
            format!("`{}`", input.name),
            allocs.to_string(),
            "real Linux 6.1 capture".into(),
        ]);
        subjects.push(subject(input, short));
    }
    Ok((subjects, rows))
}
