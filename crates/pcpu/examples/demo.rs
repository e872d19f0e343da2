//! The seed experiment on real memory (`pcpu::demo`), printed as a table and
//! as JSON: `cargo run --release -p pcpu --example demo -- [PARENTS [CHILDREN]]`.

use std::time::Instant;

use pcpu::demo::{self, DemoConfig};

fn main() -> Result<(), pcpu::Error> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("numeric argument"));
    let mut cfg = DemoConfig::default();
    cfg.parents = args.next().unwrap_or(cfg.parents);
    cfg.children = args.next().unwrap_or(cfg.children);
    let start = Instant::now();
    let report = demo::run(&cfg, &mut |_, _, _| {})?;
    println!("{}", report.table());
    println!("{}", serde_json::to_string(&report).expect("serialisable"));
    eprintln!(
        "{} groups x {} runs ({} policies, {} with hints) in {:.2?}",
        cfg.groups(),
        cfg.policies.len() + cfg.hinted.len(),
        cfg.policies.len(),
        cfg.hinted.len(),
        start.elapsed()
    );
    Ok(())
}
