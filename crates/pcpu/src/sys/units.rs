//! Where each unit of a region takes its memory from: whether its pages are
//! pre-faulted when populated ([`HotUnits`]), and on which NUMA node
//! ([`UnitNodes`]). Both are decided once per allocator and shared by its
//! regions ([`RegionOptions`], with whether unpopulated pages fault).

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use super::cpu::parse_cpu_ranges;
use super::pagebits::{bit, set_bits, Runs};

/// What a region needs to know about its units and pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegionOptions {
    /// The units whose pages are pre-faulted.
    pub(crate) hot: HotUnits,
    /// The node each unit's pages should come from.
    pub(crate) nodes: UnitNodes,
    /// Unpopulated pages are `PROT_NONE` in every unit, so that a stray
    /// access faults (`Builder::guard_pages`); else the whole mapping is
    /// read-write from the start and stays one mapping.
    pub(crate) guard: bool,
}

impl RegionOptions {
    /// Every unit pre-faulted, no node preference, no guard: the kernel's
    /// behaviour on one node, but for the faults of unpopulated pages.
    #[cfg(test)]
    pub(crate) fn all() -> Self {
        RegionOptions::default()
    }

    /// [`RegionOptions::all`] with unpopulated pages `PROT_NONE`.
    #[cfg(test)]
    pub(crate) fn guarded() -> Self {
        RegionOptions {
            guard: true,
            ..RegionOptions::default()
        }
    }
}

/// The units whose pages `Region::populate` makes resident at once (with
/// `MADV_POPULATE_WRITE`); the pages of the other units are made accessible
/// only, and take memory where they are first written (a read before that
/// sees the kernel's shared zero page, which takes none).
///
/// The allocator's default ([`HotUnits::discover`]) is the units of the
/// online CPUs that the process's main thread may run on: on a machine whose
/// possible CPUs far outnumber those (a VM sized for CPU hot-plug, a
/// container's cpuset), per-CPU objects whose copies are only written on the
/// CPUs that run them take memory on those CPUs only. A guess that is too
/// small costs page faults (a cold unit's page is committed at its first
/// write), one that is too large memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HotUnits(Option<Arc<[u64]>>);

impl HotUnits {
    /// Every unit (the kernel's behaviour: it populates every possible
    /// CPU's unit).
    pub(crate) fn all() -> Self {
        HotUnits(None)
    }

    /// Only `units` (ids at or above `nr_units` are ignored). A set that
    /// holds every unit is [`HotUnits::all`].
    pub(crate) fn only(units: impl IntoIterator<Item = usize>, nr_units: usize) -> Self {
        let mut bits = vec![0u64; nr_units.div_ceil(64)];
        for u in units.into_iter().filter(|&u| u < nr_units) {
            set_bits(&mut bits, u..u + 1);
        }
        if Runs::new(&bits, 0..nr_units, false).next().is_none() {
            return HotUnits::all();
        }
        HotUnits(Some(bits.into()))
    }

    /// The units of the online CPUs (`/sys/devices/system/cpu/online`) in
    /// the affinity mask of the process's main thread (`Cpus_allowed_list`
    /// of `/proc/self/status`), so that the thread that happens to build the
    /// allocator, pinned or not, does not decide. Either list alone when the
    /// other cannot be read, the calling thread's mask when neither can, and
    /// every unit when that fails too or the result is empty.
    pub(crate) fn discover(units: usize) -> Self {
        let online = std::fs::read_to_string(ONLINE_PATH)
            .ok()
            .and_then(|s| parse_cpu_ranges(&s));
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .and_then(parse_cpu_ranges)
            });
        // A list that could not be read admits every CPU.
        let listed = |c: usize| -> bool {
            let within = |l: &Option<Vec<RangeInclusive<usize>>>| {
                l.as_ref()
                    .map_or(true, |l| l.iter().any(|r| r.contains(&c)))
            };
            within(&online) && within(&allowed)
        };
        let cpus: Vec<usize> = if online.is_some() || allowed.is_some() {
            (0..units).filter(|&c| listed(c)).collect()
        } else {
            match rustix::thread::sched_getaffinity(None) {
                Ok(set) => (0..units.min(rustix::thread::CpuSet::MAX_CPU))
                    .filter(|&c| set.is_set(c))
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        if cpus.is_empty() {
            return HotUnits::all();
        }
        HotUnits::only(cpus, units)
    }

    /// Whether unit `unit` is pre-faulted.
    pub(crate) fn contains(&self, unit: usize) -> bool {
        match &self.0 {
            None => true,
            Some(bits) => unit / 64 < bits.len() && bit(bits, unit),
        }
    }

    /// Whether every unit is.
    pub(crate) fn is_all(&self) -> bool {
        self.0.is_none()
    }
}

/// Where the kernel lists the online CPUs.
const ONLINE_PATH: &str = "/sys/devices/system/cpu/online";

/// Where the kernel lists the NUMA nodes (`node<N>/cpulist` each).
const NODE_DIR: &str = "/sys/devices/system/node";

/// Largest node id accepted (the kernel's largest `MAX_NUMNODES` is 1024).
pub(crate) const MAX_NODE: u16 = 1023;

/// The NUMA node of each unit's CPU, when the machine's CPUs sit on more
/// than one node: a region then asks for each unit's pages on its CPU's node
/// (`mbind(MPOL_PREFERRED)`), so that a CPU's copies are local to it, as the
/// kernel's first chunk is (`pcpu_fc_alloc` on the CPU's node). Otherwise
/// (one node, or no node information) no preference is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnitNodes(Option<Arc<[Option<u16>]>>);

impl UnitNodes {
    /// No preference.
    pub(crate) fn none() -> Self {
        UnitNodes(None)
    }

    /// The nodes of units `0..units`, from sysfs.
    pub(crate) fn discover(units: usize) -> Self {
        Self::from_sysfs(Path::new(NODE_DIR), units)
    }

    /// The nodes of units `0..units` as listed under `dir` (`node<N>/cpulist`
    /// files); no preference when fewer than two nodes have CPUs, or the
    /// directory cannot be read. Malformed entries are skipped.
    pub(crate) fn from_sysfs(dir: &Path, units: usize) -> Self {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return UnitNodes::none();
        };
        let mut nodes = vec![None; units];
        let mut with_cpus = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(node) = name
                .to_str()
                .and_then(|n| n.strip_prefix("node"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|&n| n <= MAX_NODE)
            else {
                continue;
            };
            let Some(ranges) = std::fs::read_to_string(entry.path().join("cpulist"))
                .ok()
                .and_then(|s| parse_cpu_ranges(&s))
            else {
                continue; // a node without CPUs lists none
            };
            with_cpus += 1;
            for cpu in ranges.into_iter().flatten().filter(|&c| c < units) {
                nodes[cpu] = Some(node);
            }
        }
        if with_cpus < 2 {
            return UnitNodes::none();
        }
        UnitNodes(Some(nodes.into()))
    }

    /// Explicit nodes per unit (tests: a preference on a one-node machine).
    #[cfg(test)]
    pub(crate) fn from_nodes(nodes: Vec<Option<u16>>) -> Self {
        UnitNodes(Some(nodes.into()))
    }

    /// The node unit `unit`'s pages should come from, if any.
    pub(crate) fn node(&self, unit: usize) -> Option<u16> {
        self.0.as_ref().and_then(|n| n.get(unit).copied().flatten())
    }

    /// Whether no unit has a preference.
    pub(crate) fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_units() {
        assert!(HotUnits::all().contains(1000));
        let some = HotUnits::only([0, 2, 70, 500], 72);
        assert!(!some.is_all());
        let members: Vec<_> = (0..80).filter(|&u| some.contains(u)).collect();
        assert_eq!(members, [0, 2, 70]);
        assert!(HotUnits::only(0..3, 3).is_all());
        assert!(HotUnits::only([2, 1, 0, 0], 3).is_all());
        assert!(!HotUnits::only([], 3).contains(0));
    }

    fn sysfs(nodes: &[(&str, &str)]) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pcpu-nodes-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, cpulist) in nodes {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("cpulist"), cpulist).unwrap();
        }
        std::fs::create_dir_all(dir.join("power")).unwrap();
        dir
    }

    #[test]
    fn nodes_from_sysfs() {
        let dir = sysfs(&[
            ("node0", "0-1,4\n"),
            ("node1", "2-3,5-7\n"),
            ("node2", "\n"),
        ]);
        let n = UnitNodes::from_sysfs(&dir, 10);
        let got: Vec<_> = (0..11).map(|u| n.node(u)).collect();
        let (a, b) = (Some(0), Some(1));
        assert_eq!(got, [a, a, b, b, a, b, b, b, None, None, None]);
        // Fewer units than CPUs: the others are ignored.
        assert_eq!(UnitNodes::from_sysfs(&dir, 3).node(2), b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_node_or_none_readable_means_no_preference() {
        let dir = sysfs(&[("node0", "0-7\n"), ("node1", "\n"), ("nodex", "1\n")]);
        assert!(UnitNodes::from_sysfs(&dir, 8).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(UnitNodes::from_sysfs(&dir, 8).is_none());
        let dir = sysfs(&[("node0", "0-1"), ("node1", "2-x"), ("node70000", "3")]);
        assert!(UnitNodes::from_sysfs(&dir, 8).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hot_units_of_this_process() {
        let n = crate::sys::cpu::possible_cpus();
        // Every possible CPU is online and allowed here, unless the tests
        // run with a narrower mask; the units past the possible CPUs never
        // are.
        let hot = HotUnits::discover(4 * n);
        assert!(!hot.is_all());
        assert!((n..4 * n).all(|u| !hot.contains(u)));
        let main_allowed = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(parse_cpu_ranges)
            .unwrap();
        let online = parse_cpu_ranges(&std::fs::read_to_string(ONLINE_PATH).unwrap()).unwrap();
        let online: Vec<usize> = online.into_iter().flatten().collect();
        for cpu in 0..n {
            let want = online.contains(&cpu) && main_allowed.iter().any(|r| r.contains(&cpu));
            assert_eq!(hot.contains(cpu), want, "CPU {cpu}");
        }
        // A thread pinned to one CPU builds the same set.
        let pinned = std::thread::spawn(move || {
            let first = crate::sys::testutil::allowed_cpus()[0];
            let _pin = crate::sys::testutil::Pin::to(first);
            HotUnits::discover(4 * n)
        })
        .join()
        .unwrap();
        assert_eq!(pinned, hot);
    }

    #[test]
    fn this_machine() {
        let nodes = std::fs::read_dir(NODE_DIR).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("cpulist"))
                        .is_ok_and(|s| !s.trim().is_empty())
                })
                .count()
        });
        assert_eq!(UnitNodes::discover(4).is_none(), nodes < 2);
    }
}
