//! Guest memory: `-m`, the RAM backend objects (`memory-backend-ram`,
//! `-file`, `-memfd`), hugepages, NUMA nodes and memory devices (DIMM,
//! NVDIMM, virtio-pmem, virtio-mem).

use qvisor_caps::Flag;
use qvisor_domain::common::size_to_kib;
use qvisor_domain::xml::Element;
use qvisor_domain::{
    CpuSet, Domain, GenericDevice, MemoryAccess, MemoryAllocation, MemorySourceType, YesNo,
};

use super::system::{accel_of, ram_id};
use super::Ctx;
use crate::error::{Error, Result};
use crate::props::{Keyval, Props};

/// A memory region to back: guest RAM, a NUMA cell or a memory device.
#[derive(Debug, Default, Clone)]
struct MemRegion {
    size_kib: u64,
    /// Guest NUMA node (`None` = not node-specific).
    target_node: Option<u32>,
    alias: String,
    access: Option<MemoryAccess>,
    discard: Option<YesNo>,
    pagesize_kib: u64,
    source_nodes: Option<CpuSet>,
    nvdimm_path: Option<String>,
    nvdimm_pmem: bool,
    align_kib: u64,
    model: Option<String>,
}

/// `<numatune>` read from the definition.
#[derive(Debug, Default)]
struct Numatune {
    /// Global `<memory mode= nodeset= placement=>`.
    memory: Option<(String, Option<CpuSet>, bool)>,
    /// `<memnode cellid mode nodeset>`.
    memnodes: Vec<(u32, String, Option<CpuSet>)>,
}

fn numatune(def: &Domain) -> Numatune {
    let mut n = Numatune::default();
    let Some(e) = &def.numatune else { return n };
    if let Some(m) = e.find("memory") {
        let mode = m.get_attr("mode").unwrap_or("strict").to_string();
        let nodeset = m.get_attr("nodeset").and_then(CpuSet::parse);
        let auto = m.get_attr("placement") == Some("auto")
            || (nodeset.is_none() && def.vcpu.placement == Some(qvisor_domain::Placement::Auto));
        n.memory = Some((mode, nodeset, auto));
    }
    for mn in e.children.iter().filter(|c| c.is("memnode")) {
        if let Some(id) = mn.get_attr("cellid").and_then(|s| s.parse().ok()) {
            n.memnodes.push((
                id,
                mn.get_attr("mode").unwrap_or("strict").to_string(),
                mn.get_attr("nodeset").and_then(CpuSet::parse),
            ));
        }
    }
    n
}

impl Numatune {
    fn node_specified(&self, cell: Option<u32>) -> bool {
        cell.is_some_and(|c| {
            self.memnodes
                .iter()
                .any(|(id, _, ns)| *id == c && ns.is_some())
        })
    }

    fn mode(&self, cell: Option<u32>) -> &str {
        if let Some(c) = cell {
            if let Some((_, m, _)) = self.memnodes.iter().find(|(id, _, _)| *id == c) {
                return m;
            }
        }
        self.memory
            .as_ref()
            .map_or("strict", |(m, _, _)| m.as_str())
    }

    fn nodeset(&self, cell: Option<u32>, auto: Option<&CpuSet>) -> Option<CpuSet> {
        if let Some(c) = cell {
            if let Some((_, _, Some(ns))) = self.memnodes.iter().find(|(id, _, _)| *id == c) {
                return Some(ns.clone());
            }
        }
        match &self.memory {
            Some((_, _, true)) => auto.cloned(),
            Some((_, ns, false)) => ns.clone(),
            None => None,
        }
    }
}

fn policy(mode: &str) -> &'static str {
    match mode {
        "preferred" => "preferred",
        "interleave" => "interleave",
        _ => "bind",
    }
}

/// Initial memory in KiB: total minus memory devices, or the NUMA total.
pub(super) fn initial_memory_kib(def: &Domain) -> u64 {
    if let Some(cpu) = &def.cpu {
        if !cpu.numa.is_empty() {
            return cpu.numa.iter().map(|c| c.memory_kib).sum();
        }
    }
    let dimms: u64 = def
        .devices
        .memories
        .iter()
        .map(|m| module_size_kib(def, m))
        .sum();
    def.memory.total_kib.saturating_sub(dimms)
}

fn elem_size_kib(e: Option<&Element>) -> u64 {
    e.and_then(|e| {
        let v = e.trimmed_text()?;
        size_to_kib(v, e.get_attr("unit"), "KiB")
    })
    .unwrap_or(0)
}

/// Size of a memory module, aligned as QEMU needs (2 MiB, or 256 MiB on
/// ppc64).
pub(super) fn module_size_kib(def: &Domain, m: &GenericDevice) -> u64 {
    let ppc = def
        .os
        .arch
        .as_deref()
        .is_some_and(|a| a.starts_with("ppc64"));
    let align = if ppc { 256 * 1024 } else { 2048 };
    let raw = elem_size_kib(m.child("target").and_then(|t| t.find("size")));
    raw.div_ceil(align) * align
}

fn mem_device(def: &Domain, m: &GenericDevice) -> MemRegion {
    let src = m.child("source");
    let tgt = m.child("target");
    MemRegion {
        size_kib: module_size_kib(def, m),
        target_node: tgt
            .and_then(|t| t.find("node"))
            .and_then(|n| n.trimmed_text())
            .and_then(|s| s.parse().ok()),
        alias: m.info.alias.clone().unwrap_or_default(),
        access: m.attr("access").and_then(|a| match a {
            "shared" => Some(MemoryAccess::Shared),
            "private" => Some(MemoryAccess::Private),
            _ => None,
        }),
        discard: m
            .attr("discard")
            .map(|d| if d == "yes" { YesNo::Yes } else { YesNo::No }),
        pagesize_kib: elem_size_kib(src.and_then(|s| s.find("pagesize"))),
        source_nodes: src
            .and_then(|s| s.find("nodemask"))
            .and_then(|n| n.trimmed_text())
            .and_then(CpuSet::parse),
        nvdimm_path: src
            .and_then(|s| s.find("path"))
            .and_then(|p| p.trimmed_text())
            .map(str::to_string),
        nvdimm_pmem: src.and_then(|s| s.find("pmem")).is_some(),
        align_kib: elem_size_kib(src.and_then(|s| s.find("alignsize"))),
        model: m.attr("model").map(str::to_string),
    }
}

struct Pagesize {
    pagesize: u64,
    need_hugepage: bool,
    use_hugepage: bool,
    prealloc: bool,
}

fn default_hugepage(ctx: &Ctx) -> Result<u64> {
    let mounts = &ctx.env.hugetlbfs;
    if mounts.is_empty() {
        return Err(Error::internal(
            "hugetlbfs filesystem is not mounted or disabled by administrator config",
        ));
    }
    Ok(mounts
        .iter()
        .find(|m| m.default)
        .or(mounts.first())
        .map(|m| m.page_size_kib)
        .unwrap_or(0))
}

fn get_pagesize(ctx: &Ctx, mem: &MemRegion) -> Result<Pagesize> {
    let def = ctx.def;
    let mut pagesize = mem.pagesize_kib;
    let mut need = pagesize != 0;
    let mut use_hp = pagesize != 0;
    if pagesize == 0 {
        let pages = def
            .memory_backing
            .as_ref()
            .and_then(|m| m.hugepages.clone())
            .unwrap_or_default();
        let mut master = None;
        let mut found = None;
        for hp in &pages {
            match &hp.nodeset {
                None => {
                    master = Some(hp);
                    continue;
                }
                Some(ns) => {
                    if let Some(node) = mem.target_node {
                        if ns.contains(node) {
                            need = true;
                            found = Some(hp);
                            break;
                        }
                    }
                }
            }
        }
        let hp = found.or(master);
        if let Some(hp) = hp {
            pagesize = hp.size_kib;
            use_hp = true;
        }
        // a <hugepages/> with no <page> means the default size
        if pages.is_empty()
            && def
                .memory_backing
                .as_ref()
                .is_some_and(|m| m.hugepages.is_some())
        {
            use_hp = true;
        }
    }
    if pagesize == ctx.env.system_page_size_kib {
        pagesize = 0;
        need = false;
        use_hp = false;
    } else if use_hp && pagesize == 0 {
        pagesize = default_hugepage(ctx)?;
    }
    let mut prealloc =
        def.memory_backing.as_ref().and_then(|m| m.allocation) == Some(MemoryAllocation::Immediate);
    if mem.nvdimm_path.is_some() {
        if !mem.nvdimm_pmem && mem.model.as_deref() != Some("virtio-pmem") {
            prealloc = true;
        }
    } else if use_hp {
        prealloc = true;
    }
    Ok(Pagesize {
        pagesize,
        need_hugepage: need,
        use_hugepage: use_hp,
        prealloc,
    })
}

fn hugepage_path(ctx: &Ctx, pagesize: u64) -> Result<String> {
    if ctx.env.hugetlbfs.is_empty() {
        return Err(Error::internal(
            "hugetlbfs filesystem is not mounted or disabled by administrator config",
        ));
    }
    let m = ctx
        .env
        .hugetlbfs
        .iter()
        .find(|m| m.page_size_kib == pagesize)
        .ok_or_else(|| {
            Error::internal(format!(
                "Unable to find any usable hugetlbfs mount for {pagesize} KiB"
            ))
        })?;
    Ok(format!(
        "{}/libvirt/qemu/{}",
        m.path.display(),
        ctx.short_name
    ))
}

fn backing_path(ctx: &Ctx, alias: &str) -> String {
    format!(
        "{}/{}/{}",
        ctx.env.memory_backing_dir.display(),
        ctx.short_name,
        alias
    )
}

/// libvirt's `qemuBuildMemoryBackendProps`. Returns the props and whether
/// a backend object is actually needed (`false` = plain `-numa mem=` would do).
fn backend_props(
    ctx: &Ctx,
    alias: &str,
    mem: &MemRegion,
    force: bool,
    system_memory: bool,
) -> Result<(Props, bool)> {
    let def = ctx.def;
    let nt = numatune(def);
    let mb = def.memory_backing.clone().unwrap_or_default();
    let mut access = mem.access;
    let mut discard = mem.discard;
    if let Some(node) = mem.target_node {
        let cell = def.cpu.as_ref().and_then(|c| c.numa.get(node as usize));
        if access.is_none() {
            access = cell.and_then(|c| c.mem_access);
        }
        if discard.is_none() {
            discard = cell.and_then(|c| c.discard);
        }
    }
    if access.is_none() {
        access = mb.access;
    }
    if discard.is_none() && mb.discard {
        discard = Some(YesNo::Yes);
    }
    let mode = nt.mode(mem.target_node).to_string();
    let ps = get_pagesize(ctx, mem)?;
    let mut props = Props::new();
    let mut backend = "memory-backend-file";
    let mut disable_canonical = false;
    let share = |p: &mut Props| match access {
        Some(MemoryAccess::Shared) => p.set("share", true),
        Some(MemoryAccess::Private) => p.set("share", false),
        None => {}
    };
    if mem.model.as_deref() == Some("sgx-epc") {
        backend = "memory-backend-epc";
    } else if mem.nvdimm_path.is_none() && mb.source == Some(MemorySourceType::Memfd) {
        backend = "memory-backend-memfd";
        if ps.use_hugepage {
            props.set("hugetlb", true);
            props.set("hugetlbsize", ps.pagesize << 10);
        }
        share(&mut props);
        disable_canonical = system_memory;
    } else if ps.use_hugepage
        || mem.nvdimm_path.is_some()
        || access.is_some()
        || mb.source == Some(MemorySourceType::File)
    {
        let path = if let Some(p) = &mem.nvdimm_path {
            p.clone()
        } else if ps.use_hugepage {
            hugepage_path(ctx, ps.pagesize)?
        } else {
            backing_path(ctx, &mem.alias)
        };
        props.set("mem-path", path);
        if mem.nvdimm_path.is_none() {
            if let Some(d) = discard {
                props.set("discard-data", d.is_yes());
            }
        }
        share(&mut props);
        disable_canonical = system_memory;
    } else {
        backend = "memory-backend-ram";
    }
    if disable_canonical && ctx.has(Flag::XUseCanonicalPathForRamblockId) {
        props.set("x-use-canonical-path-for-ramblock-id", false);
    }
    let mut prealloc = ps.prealloc;
    if backend == "memory-backend-epc" && !ctx.mem_prealloc {
        prealloc = true;
    }
    if mem.model.as_deref() == Some("virtio-mem") {
        if !ctx.has(Flag::DeviceVirtioMemPciPrealloc) && ctx.mem_prealloc {
            props.set("prealloc", false);
        }
        if ctx.has(Flag::MemoryBackendReserve) {
            props.set("reserve", false);
        }
    } else if !ctx.mem_prealloc {
        if prealloc {
            props.set("prealloc", true);
        }
        if let Some(t) = mb.allocation_threads.filter(|t| *t > 0) {
            props.set("prealloc-threads", t);
        }
    }
    props.set("size", mem.size_kib * 1024);
    if mem.align_kib > 0 {
        props.set("align", mem.align_kib * 1024);
    }
    if mem.nvdimm_pmem {
        if !ctx.has(Flag::ObjectMemoryFilePmem) {
            return Err(Error::unsupported(
                "nvdimm pmem property is not available with this QEMU binary",
            ));
        }
        props.set("pmem", true);
    }
    let nodemask = match &mem.source_nodes {
        Some(n) => Some(n.clone()),
        None => nt.nodeset(mem.target_node, ctx.env.host.auto_nodeset().as_ref()),
    };
    if let Some(nm) = &nodemask {
        if !ctx.env.host.numa_nodes_available(nm) {
            return Err(Error::unsupported(format!(
                "NUMA node {} is unavailable",
                nm.last().unwrap_or(0)
            )));
        }
        if mode != "restrictive" {
            props.set(
                "host-nodes",
                serde_json::Value::Array(nm.0.iter().map(|n| (*n).into()).collect()),
            );
            props.set("policy", policy(&mode));
        }
    }
    let needed = ps.need_hugepage
        || mem.source_nodes.is_some()
        || nt.node_specified(mem.target_node)
        || mem.nvdimm_path.is_some()
        || access.is_some()
        || matches!(
            mb.source,
            Some(MemorySourceType::File | MemorySourceType::Memfd)
        )
        || force;
    if needed && backend == "memory-backend-memfd" && !ctx.has(Flag::ObjectMemoryMemfd) {
        return Err(Error::unsupported(
            "this qemu doesn't support the memory-backend-memfd object",
        ));
    }
    let mut out = Props::new().with("qom-type", backend).with("id", alias);
    out.extend(props);
    Ok((out, needed))
}

/// `thread-context` for a preallocated backend pinned to host nodes.
fn thread_context(ctx: &Ctx, props: &mut Props) -> Option<Props> {
    if !ctx.has(Flag::ThreadContext) {
        return None;
    }
    let nodes = props.get("host-nodes")?.clone();
    if props.get("prealloc") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let id = format!("tc-{}", props.get_str("id")?);
    props.set("prealloc-context", id.as_str());
    Some(
        Props::new()
            .with("qom-type", "thread-context")
            .with("id", id)
            .with("node-affinity", nodes),
    )
}

fn push_backend(ctx: &mut Ctx, mut props: Props) {
    if let Some(tc) = thread_context(ctx, &mut props) {
        ctx.object(tc);
    }
    ctx.object(props);
}

/// `-mem-path`/`-mem-prealloc` for QEMUs without a default RAM id.
fn mem_path(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let mb = def.memory_backing.clone().unwrap_or_default();
    let mut path = None;
    let mut prealloc = false;
    let pages = mb.hugepages.clone().unwrap_or_default();
    if mb.hugepages.is_some()
        && pages.first().map_or(0, |p| p.size_kib) != ctx.env.system_page_size_kib
    {
        let mut size = pages.first().map_or(0, |p| p.size_kib);
        if size == 0 {
            size = default_hugepage(ctx)?;
        }
        path = Some(hugepage_path(ctx, size)?);
        prealloc = true;
    } else if mb.source == Some(MemorySourceType::File) {
        path = Some(backing_path(ctx, "ram"));
    }
    if mb.allocation == Some(MemoryAllocation::Immediate) {
        prealloc = true;
    }
    if prealloc && !ctx.mem_prealloc {
        ctx.flag("-mem-prealloc");
        ctx.mem_prealloc = true;
    }
    if let Some(p) = path {
        ctx.word("-mem-path", p);
    }
    Ok(())
}

pub(super) fn mem(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let initial = initial_memory_kib(def);
    if def.memory.max_kib.unwrap_or(0) > 0 || def.memory.slots.unwrap_or(0) > 0 {
        ctx.keyval(
            "-m",
            Keyval::new()
                .kv("size", format!("{initial}k"))
                .kv("slots", def.memory.slots.unwrap_or(0))
                .kv("maxmem", format!("{}k", def.memory.max_kib.unwrap_or(0))),
        );
    } else {
        ctx.word("-m", (initial / 1024).to_string());
    }
    let has_numa = def.cpu.as_ref().is_some_and(|c| !c.numa.is_empty());
    match ram_id(ctx) {
        Some(id) => {
            if !has_numa {
                let region = MemRegion {
                    size_kib: initial,
                    alias: id.clone(),
                    ..Default::default()
                };
                let (props, _) = backend_props(ctx, &id, &region, true, true)?;
                push_backend(ctx, props);
            }
        }
        None => {
            if !has_numa {
                mem_path(ctx)?;
            }
        }
    }
    let locked = def.memory_backing.as_ref().is_some_and(|m| m.locked);
    ctx.keyval(
        "-overcommit",
        Keyval::new().kv("mem-lock", if locked { "on" } else { "off" }),
    );
    Ok(())
}

pub(super) fn numa(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let Some(cpu) = def.cpu.as_ref().filter(|c| !c.numa.is_empty()) else {
        return Ok(());
    };
    let nt = numatune(def);
    let all: Vec<&CpuSet> = nt
        .memory
        .iter()
        .filter_map(|(_, ns, _)| ns.as_ref())
        .chain(nt.memnodes.iter().filter_map(|(_, _, ns)| ns.as_ref()))
        .collect();
    for ns in all {
        if !ctx.env.host.numa_nodes_available(ns) {
            return Err(Error::unsupported(format!(
                "NUMA node {} is unavailable",
                ns.last().unwrap_or(0)
            )));
        }
    }
    let mut need_backend = !ctx
        .caps
        .machine(accel_of(def), ctx.machine())
        .is_some_and(|m| m.numa_mem_supported);
    let hmat = cpu.numa_interconnects.is_some()
        || cpu.numa.iter().any(|c| c.residue.find("cache").is_some());
    if hmat {
        need_backend = true;
    }
    let mut backends = Vec::new();
    for (i, cell) in cpu.numa.iter().enumerate() {
        let alias = format!("ram-node{i}");
        let region = MemRegion {
            size_kib: cell.memory_kib,
            target_node: Some(i as u32),
            alias: alias.clone(),
            ..Default::default()
        };
        let (p, needed) = backend_props(ctx, &alias, &region, false, false)?;
        if needed {
            need_backend = true;
        }
        backends.push(p);
    }
    if !need_backend {
        mem_path(ctx)?;
    }
    let master = cpu
        .numa
        .iter()
        .position(|c| c.cpus.is_some())
        .ok_or_else(|| Error::unsupported("At least one NUMA node has to have CPUs"))?;
    for (i, (cell, props)) in cpu.numa.iter().zip(backends).enumerate() {
        if need_backend {
            push_backend(ctx, props);
        }
        let mut kv = Keyval::head("node").kv("nodeid", i);
        if let Some(cpus) = &cell.cpus {
            for part in cpus.to_string().split(',') {
                kv.push_bare(format!("cpus={part}"));
            }
        }
        if hmat {
            kv.push("initiator", node_initiator(cpu, i).unwrap_or(master));
        }
        if need_backend {
            kv.push("memdev", format!("ram-node{i}"));
        } else {
            kv.push("mem", cell.memory_kib / 1024);
        }
        ctx.keyval("-numa", kv);
    }
    // distances
    let n = cpu.numa.len();
    let dist = |i: usize, j: usize| -> Option<u32> {
        let cell = cpu.numa.get(i)?;
        let d = cell.residue.find("distances")?;
        d.children
            .iter()
            .filter(|s| s.is("sibling"))
            .find(|s| s.get_attr("id").and_then(|v| v.parse::<usize>().ok()) == Some(j))
            .and_then(|s| s.get_attr("value"))
            .and_then(|v| v.parse().ok())
    };
    let any_dist = (0..n).any(|i| cpu.numa[i].residue.find("distances").is_some());
    if any_dist {
        for i in 0..n {
            for j in 0..n {
                let d = dist(i, j)
                    .or_else(|| dist(j, i))
                    .unwrap_or(if i == j { 10 } else { 20 });
                ctx.keyval(
                    "-numa",
                    Keyval::head("dist").kv("src", i).kv("dst", j).kv("val", d),
                );
            }
        }
    }
    if hmat {
        if let Some(ic) = &cpu.numa_interconnects {
            for e in &ic.children {
                let kind = e.name.as_str();
                let hierarchy = match e.get_attr("cache").and_then(|c| c.parse::<u32>().ok()) {
                    Some(1) => "first-level",
                    Some(2) => "second-level",
                    Some(3) => "third-level",
                    _ => "memory",
                };
                let mut kv = Keyval::head("hmat-lb")
                    .kv("initiator", e.get_attr("initiator").unwrap_or("0"))
                    .kv("target", e.get_attr("target").unwrap_or("0"))
                    .kv("hierarchy", hierarchy);
                let ty = e.get_attr("type").unwrap_or("access");
                let value = e.get_attr("value").unwrap_or("0");
                match kind {
                    "latency" => {
                        kv.push("data-type", format!("{ty}-latency"));
                        kv.push("latency", value);
                    }
                    _ => {
                        kv.push("data-type", format!("{ty}-bandwidth"));
                        let kib = size_to_kib(value, e.get_attr("unit"), "KiB").unwrap_or(0);
                        kv.push("bandwidth", format!("{kib}K"));
                    }
                }
                ctx.keyval("-numa", kv);
            }
        }
        for (i, cell) in cpu.numa.iter().enumerate() {
            for c in cell.residue.children.iter().filter(|c| c.is("cache")) {
                let size = c
                    .find("size")
                    .and_then(|e| size_to_kib(e.get_attr("value")?, e.get_attr("unit"), "KiB"))
                    .unwrap_or(0);
                let mut kv = Keyval::head("hmat-cache")
                    .kv("node-id", i)
                    .kv("size", format!("{size}K"))
                    .kv("level", c.get_attr("level").unwrap_or("1"));
                let assoc = match c.get_attr("associativity") {
                    Some("direct") => "direct",
                    Some("full") => "complex",
                    _ => "none",
                };
                kv.push("associativity", assoc);
                let policy = match c.get_attr("policy") {
                    Some("writeback") => "write-back",
                    Some("writethrough") => "write-through",
                    _ => "none",
                };
                kv.push("policy", policy);
                let line = c.find("line").and_then(|l| {
                    let v: u64 = l.get_attr("value")?.parse().ok()?;
                    let scale =
                        qvisor_domain::common::unit_scale(l.get_attr("unit").unwrap_or("B"))?;
                    Some(v * scale)
                });
                if let Some(l) = line.filter(|l| *l > 0) {
                    kv.push("line", l);
                }
                ctx.keyval("-numa", kv);
            }
        }
    }
    Ok(())
}

/// The initiator of a NUMA node: itself when it has CPUs, else the
/// initiator of an interconnect targeting it (`virDomainNumaGetNodeInitiator`).
fn node_initiator(cpu: &qvisor_domain::Cpu, node: usize) -> Option<usize> {
    if cpu.numa.get(node)?.cpus.is_some() {
        return Some(node);
    }
    let ic = cpu.numa_interconnects.as_ref()?;
    ic.children
        .iter()
        .find(|e| e.get_attr("target").and_then(|t| t.parse::<usize>().ok()) == Some(node))
        .and_then(|e| e.get_attr("initiator")?.parse().ok())
}

pub(super) fn memory_devices(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    for m in &def.devices.memories {
        let region = mem_device(def, m);
        let alias = format!("mem{}", region.alias);
        let (props, _) = backend_props(ctx, &alias, &region, true, false)?;
        push_backend(ctx, props);
        let driver = match region.model.as_deref() {
            Some("dimm") | None => "pc-dimm",
            Some("nvdimm") => "nvdimm",
            Some("virtio-pmem") => "virtio-pmem-pci",
            Some("virtio-mem") => "virtio-mem-pci",
            _ => continue,
        };
        let tgt = m.child("target");
        let label = elem_size_kib(
            tgt.and_then(|t| t.find("label"))
                .and_then(|l| l.find("size")),
        );
        let block = elem_size_kib(tgt.and_then(|t| t.find("block")));
        let requested = elem_size_kib(tgt.and_then(|t| t.find("requested")));
        let readonly = tgt.and_then(|t| t.find("readonly")).is_some();
        let uuid = m
            .child("uuid")
            .and_then(|u| u.trimmed_text())
            .map(str::to_string);
        let mut prealloc = false;
        if driver == "virtio-mem-pci" && ctx.has(Flag::DeviceVirtioMemPciPrealloc) {
            prealloc = get_pagesize(ctx, &region)?.prealloc;
        }
        let mut p = Props::new()
            .with("driver", driver)
            .opt("node", region.target_node)
            .nz("label-size", label * 1024)
            .nz("block-size", block * 1024)
            .nz("requested-size", requested * 1024)
            .opt("uuid", uuid)
            .opt("unarmed", readonly.then_some(true))
            .with("memdev", alias)
            .flag("prealloc", prealloc)
            .with("id", region.alias.as_str());
        super::devices::address_props(ctx, &mut p, &m.info)?;
        ctx.device(p);
    }
    Ok(())
}
