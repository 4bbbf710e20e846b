//! Probing a QEMU binary over QMP, following libvirt 9.0's query sequence
//! (`virQEMUCapsInitQMPMonitor` and `virQEMUCapsInitQMPMonitorTCG`) so that
//! libvirt's recorded transcripts replay.
//!
//! Phase 1 runs on a QEMU started with a hardware accelerator if one can be
//! used (`-machine none,accel=kvm:tcg`); it sets all flags and the data of
//! the accelerator it found. Phase 2 runs only when phase 1 found KVM (or
//! HVF) and TCG is available, on a second QEMU started with `accel=tcg`; it
//! records TCG's CPU models, host CPU (`max`) and machines.

pub mod schema;
pub mod tables;

use serde_json::{json, Value};

use crate::arch;
use crate::flags::Flag;
use crate::model::*;
use schema::Schema;
use tables::*;

/// The oldest QEMU libvirt 9.0 (and qvisor) supports: 4.2.0.
pub const MIN_VERSION: u32 = 4_002_000;

/// Something that answers QMP commands: a live [`qvisor_qmp::QmpClient`]
/// (over a socket or a replayed transcript) or a test double.
pub trait Monitor {
    /// Runs a command; QEMU's error replies are `qvisor_qmp::Error::Command`.
    fn execute(&self, command: &str, arguments: Option<Value>) -> qvisor_qmp::Result<Value>;
}

impl Monitor for qvisor_qmp::QmpClient {
    fn execute(&self, command: &str, arguments: Option<Value>) -> qvisor_qmp::Result<Value> {
        qvisor_qmp::QmpClient::execute(self, command, arguments)
    }
}

/// Why probing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A QMP command failed in a way libvirt treats as fatal.
    #[error("failed to probe capabilities of {binary}: {source}")]
    Qmp {
        /// The binary.
        binary: String,
        /// The failing command and cause.
        #[source]
        source: qvisor_qmp::Error,
    },
    /// A reply lacked data libvirt requires.
    #[error("failed to probe capabilities of {binary}: {command} reply was missing {what}")]
    Reply {
        /// The binary.
        binary: String,
        /// The command.
        command: &'static str,
        /// What was missing or malformed.
        what: String,
    },
    /// QEMU is too old.
    #[error("QEMU version >= 4.2.0 is required, but {found} found")]
    TooOld {
        /// The version found (`major.minor.micro`).
        found: String,
    },
    /// The target architecture is unknown.
    #[error("Unknown QEMU arch {arch}")]
    UnknownArch {
        /// The target QEMU reported.
        arch: String,
    },
}

struct Prober<'a> {
    caps: &'a mut QemuCaps,
    mon: &'a dyn Monitor,
}

fn is_class(e: &qvisor_qmp::Error, class: &str) -> bool {
    e.qmp_class() == Some(class)
}

impl Prober<'_> {
    fn qmp_err(&self, source: qvisor_qmp::Error) -> ProbeError {
        ProbeError::Qmp {
            binary: self.caps.emulator.clone(),
            source,
        }
    }

    fn reply_err(&self, command: &'static str, what: impl Into<String>) -> ProbeError {
        ProbeError::Reply {
            binary: self.caps.emulator.clone(),
            command,
            what: what.into(),
        }
    }

    fn exec(&self, command: &str, args: Option<Value>) -> Result<Value, ProbeError> {
        self.mon.execute(command, args).map_err(|e| self.qmp_err(e))
    }

    /// Runs a command whose reply must be an array.
    fn exec_array(
        &self,
        command: &'static str,
        args: Option<Value>,
    ) -> Result<Vec<Value>, ProbeError> {
        match self.exec(command, args)? {
            Value::Array(a) => Ok(a),
            _ => Err(self.reply_err(command, "an array")),
        }
    }

    /// `name` members of an array reply (`query-commands`, `qom-list-types`).
    fn names(
        &self,
        command: &'static str,
        items: &[Value],
        key: &str,
    ) -> Result<Vec<String>, ProbeError> {
        items
            .iter()
            .map(|i| {
                i.get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| self.reply_err(command, format!("'{key}'")))
            })
            .collect()
    }

    fn string_flags(&mut self, table: &[(&str, Flag)], values: &[String]) {
        for &(name, flag) in table {
            if !self.caps.has(flag) && values.iter().any(|v| v == name) {
                self.caps.set(flag);
            }
        }
    }

    fn version(&mut self) -> Result<(), ProbeError> {
        let v = self.exec("query-version", None)?;
        let qemu = v
            .get("qemu")
            .ok_or_else(|| self.reply_err("query-version", "'qemu' data"))?;
        let part = |k: &str| qemu.get(k).and_then(Value::as_i64);
        let (Some(major), Some(minor), Some(micro)) = (part("major"), part("minor"), part("micro"))
        else {
            return Err(self.reply_err("query-version", "'major', 'minor' or 'micro' version"));
        };
        let package = v
            .get("package")
            .and_then(Value::as_str)
            .ok_or_else(|| self.reply_err("query-version", "'package' version"))?;
        if major < 4 || (major == 4 && minor < 2) {
            return Err(ProbeError::TooOld {
                found: format!("{major}.{minor}.{micro}"),
            });
        }
        let number = major * 1_000_000 + minor * 1_000 + micro;
        self.caps.version = u32::try_from(number)
            .map_err(|_| self.reply_err("query-version", "a valid version"))?;
        self.caps.package = Some(package.to_string());
        Ok(())
    }

    fn target(&mut self) -> Result<(), ProbeError> {
        let v = self.exec("query-target", None)?;
        let target = v
            .get("arch")
            .and_then(Value::as_str)
            .ok_or_else(|| self.reply_err("query-target", "arch data"))?;
        let arch = arch::arch_from_qemu_target(target).ok_or_else(|| ProbeError::UnknownArch {
            arch: target.to_string(),
        })?;
        self.caps.arch = arch.to_string();
        Ok(())
    }

    fn basic_arch(&mut self) {
        match self.caps.arch.as_str() {
            "i686" | "x86_64" => {
                self.caps.set(Flag::NoAcpi);
                self.caps.set(Flag::NoHpet);
            }
            "aarch64" => {
                self.caps.set(Flag::NoAcpi);
                self.caps.set(Flag::CpuAarch64Off);
                self.caps.set(Flag::MachVirtGicVersion);
            }
            "s390" | "s390x" => {
                self.caps.set(Flag::AesKeyWrap);
                self.caps.set(Flag::DeaKeyWrap);
                self.caps.set(Flag::Loadparm);
            }
            _ => {}
        }
    }

    fn schema(&mut self) -> Result<(), ProbeError> {
        let reply = self.exec("query-qmp-schema", None)?;
        if !reply.is_array() {
            return Err(self.reply_err("query-qmp-schema", "an array"));
        }
        let schema = Schema::new(&reply);
        for &(query, flag) in SCHEMA_QUERIES {
            if schema.path_exists(query) {
                self.caps.set(flag);
            }
        }
        Ok(())
    }

    fn commands(&mut self) -> Result<(), ProbeError> {
        let items = self.exec_array("query-commands", None)?;
        let names = self.names("query-commands", &items, "name")?;
        self.string_flags(COMMANDS, &names);
        Ok(())
    }

    fn kvm_state(&mut self) -> Result<(), ProbeError> {
        let v = self.exec("query-kvm", None)?;
        let (Some(enabled), Some(present)) = (
            v.get("enabled").and_then(Value::as_bool),
            v.get("present").and_then(Value::as_bool),
        ) else {
            return Err(self.reply_err("query-kvm", "'enabled' or 'present'"));
        };
        if enabled && present {
            self.caps.set(Flag::Kvm);
        }
        Ok(())
    }

    fn object_types(&mut self) -> Result<(), ProbeError> {
        let items = self.exec_array("qom-list-types", None)?;
        let names = self.names("qom-list-types", &items, "name")?;
        self.string_flags(OBJECT_TYPES, &names);
        Ok(())
    }

    fn device_props(&mut self) -> Result<(), ProbeError> {
        for &(device, props, condition) in DEVICE_PROPS {
            if condition.is_some_and(|c| !self.caps.has(c)) {
                continue;
            }
            let items = match self.mon.execute(
                "device-list-properties",
                Some(json!({ "typename": device })),
            ) {
                Ok(Value::Array(a)) => a,
                Ok(_) => return Err(self.reply_err("device-list-properties", "an array")),
                Err(e) if is_class(&e, "DeviceNotFound") => Vec::new(),
                Err(e) => return Err(self.qmp_err(e)),
            };
            for prop in props {
                let Some(entry) = items
                    .iter()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(prop.name))
                else {
                    continue;
                };
                self.caps.set(prop.flag);
                if prop.scsi_default
                    && entry.get("default-value").and_then(Value::as_bool) == Some(false)
                {
                    self.caps.set(Flag::VirtioBlkScsiDefaultDisabled);
                }
            }
        }
        Ok(())
    }

    /// `qom-list-properties` names; `None` when the type does not exist.
    fn object_prop_names(&self, typename: &str) -> Result<Vec<String>, ProbeError> {
        match self
            .mon
            .execute("qom-list-properties", Some(json!({ "typename": typename })))
        {
            Ok(Value::Array(a)) => self.names("qom-list-properties", &a, "name"),
            Ok(_) => Err(self.reply_err("qom-list-properties", "an array")),
            Err(e) if is_class(&e, "DeviceNotFound") => Ok(Vec::new()),
            Err(e) => Err(self.qmp_err(e)),
        }
    }

    fn object_props(&mut self) -> Result<(), ProbeError> {
        for &(typename, props, condition) in OBJECT_PROPS {
            if condition.is_some_and(|c| !self.caps.has(c)) {
                continue;
            }
            let names = self.object_prop_names(typename)?;
            self.string_flags(props, &names);
        }
        Ok(())
    }

    fn machine_types(&mut self, accel: Accel) -> Result<(), ProbeError> {
        let items = self.exec_array("query-machines", None)?;
        let preferred = arch::arch_info(&self.caps.arch).and_then(|a| a.preferred_machine);
        let mut machines = Vec::new();
        let (mut preferred_idx, mut default_idx) = (None, None);
        for item in &items {
            let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let name = s("name").ok_or_else(|| self.reply_err("query-machines", "'name'"))?;
            if name == "none" {
                continue;
            }
            let is_default = item
                .get("is-default")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let m = MachineType {
                alias: s("alias"),
                max_cpus: item
                    .get("cpu-max")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                hotplug_cpus: item
                    .get("hotpluggable-cpus")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                default: is_default,
                default_cpu: s("default-cpu-type"),
                numa_mem_supported: item
                    .get("numa-mem-supported")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                default_ram_id: s("default-ram-id"),
                deprecated: item
                    .get("deprecated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                acpi: None,
                name,
            };
            if preferred.is_some_and(|p| m.alias.as_deref() == Some(p) || m.name == p) {
                preferred_idx = Some(machines.len());
            }
            if is_default {
                default_idx = Some(machines.len());
            }
            machines.push(m);
        }
        // libvirt prefers its own historical default over QEMU's, and puts
        // the chosen default first.
        if let Some(i) = preferred_idx.or(default_idx) {
            let m = machines.remove(i);
            machines.insert(0, m);
        }
        self.caps.accel_mut(accel).machines.extend(machines);
        Ok(())
    }

    fn machine_props(&mut self, accel: Accel) -> Result<(), ProbeError> {
        for &(machine, props) in MACHINE_PROPS {
            let canon = self.caps.canonical_machine(accel, machine).to_string();
            if canon != "none"
                && !self
                    .caps
                    .accel(accel)
                    .machines
                    .iter()
                    .any(|m| m.name == canon)
            {
                continue;
            }
            let names = self.object_prop_names(&format!("{canon}-machine"))?;
            self.string_flags(props, &names);
        }
        Ok(())
    }

    fn cpu_definitions(&mut self, accel: Accel) -> Result<(), ProbeError> {
        if !self.caps.has(Flag::QueryCpuDefinitions) {
            return Ok(());
        }
        let items = match self.mon.execute("query-cpu-definitions", None) {
            Ok(Value::Array(a)) => a,
            Ok(_) => return Err(self.reply_err("query-cpu-definitions", "an array")),
            // Some targets have the command but answer "Not supported".
            Err(e) if is_class(&e, "GenericError") => return Ok(()),
            Err(e) => return Err(self.qmp_err(e)),
        };
        let mut models = Vec::with_capacity(items.len());
        for item in &items {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| self.reply_err("query-cpu-definitions", "'name'"))?;
            let typename = item
                .get("typename")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            let (usable, blockers) =
                match item.get("unavailable-features").and_then(Value::as_array) {
                    None => (CpuUsable::Unknown, Vec::new()),
                    Some(f) if f.is_empty() => (CpuUsable::Yes, Vec::new()),
                    Some(f) => (
                        CpuUsable::No,
                        f.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect(),
                    ),
                };
            // QEMU 2.11 lower-cased the POWER models; libvirt keeps its own
            // spelling from its ppc64 CPU map.
            let name = if self.caps.arch.starts_with("ppc64") {
                PPC64_MODELS
                    .iter()
                    .find(|m| m.eq_ignore_ascii_case(name))
                    .copied()
                    .unwrap_or(name)
            } else {
                name
            };
            models.push(CpuModel {
                name: name.to_string(),
                typename,
                usable,
                blockers,
                deprecated: item
                    .get("deprecated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
        if models.iter().any(|m| m.name == "max") {
            self.caps.set(Flag::CpuMax);
        }
        self.caps.accel_mut(accel).cpu_models = models;
        Ok(())
    }

    /// A string-array query that may be missing (`CommandNotFound` → `None`).
    fn optional_strings(&self, command: &'static str) -> Result<Option<Vec<String>>, ProbeError> {
        match self.mon.execute(command, None) {
            Ok(Value::Array(a)) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            )),
            Ok(_) => Err(self.reply_err(command, "an array")),
            Err(e) if is_class(&e, "CommandNotFound") => Ok(None),
            Err(e) => Err(self.qmp_err(e)),
        }
    }

    fn tpm(&mut self) -> Result<(), ProbeError> {
        let Some(models) = self.optional_strings("query-tpm-models")? else {
            return Ok(());
        };
        self.string_flags(TPM_MODELS, &models);
        let Some(types) = self.optional_strings("query-tpm-types")? else {
            return Ok(());
        };
        self.string_flags(TPM_TYPES, &types);
        Ok(())
    }

    fn command_line(&mut self) -> Result<(), ProbeError> {
        let items = self.exec_array("query-command-line-options", None)?;
        let mut options: Vec<(&str, &[Value])> = Vec::new();
        for item in &items {
            let (Some(name), Some(params)) = (
                item.get("option").and_then(Value::as_str),
                item.get("parameters").and_then(Value::as_array),
            ) else {
                return Err(
                    self.reply_err("query-command-line-options", "'option' name or parameters")
                );
            };
            options.push((name, params));
        }
        for &(option, param, flag) in COMMAND_LINE {
            // Like a hash table keyed by option, the last entry wins.
            let Some((_, params)) = options.iter().rev().find(|(n, _)| *n == option) else {
                continue;
            };
            let found = match param {
                None => true,
                Some(p) => params
                    .iter()
                    .any(|x| x.get("name").and_then(Value::as_str) == Some(p)),
            };
            if found {
                self.caps.set(flag);
            }
        }
        Ok(())
    }

    fn migration(&mut self) -> Result<(), ProbeError> {
        let items = self.exec_array("query-migrate-capabilities", None)?;
        let names = self.names("query-migrate-capabilities", &items, "capability")?;
        self.string_flags(MIGRATION, &names);
        Ok(())
    }

    fn gic(&mut self) -> Result<(), ProbeError> {
        if !matches!(self.caps.arch.as_str(), "aarch64" | "armv6l" | "armv7l") {
            return Ok(());
        }
        let items = match self.mon.execute("query-gic-capabilities", None) {
            Ok(Value::Array(a)) => a,
            Ok(_) => return Err(self.reply_err("query-gic-capabilities", "an array")),
            Err(e) if is_class(&e, "CommandNotFound") => return Ok(()),
            Err(e) => return Err(self.qmp_err(e)),
        };
        let mut gic = Vec::new();
        for item in &items {
            let (Some(version), Some(kernel), Some(emulated)) = (
                item.get("version").and_then(Value::as_u64),
                item.get("kernel").and_then(Value::as_bool),
                item.get("emulated").and_then(Value::as_bool),
            ) else {
                return Err(
                    self.reply_err("query-gic-capabilities", "GIC version or implementation")
                );
            };
            gic.push(GicCap {
                version: u32::try_from(version).unwrap_or(0),
                kernel,
                emulated,
            });
        }
        self.caps.gic = gic;
        Ok(())
    }

    fn sev(&mut self) -> Result<(), ProbeError> {
        if !self.caps.has(Flag::SevGuest) {
            return Ok(());
        }
        let v = match self.mon.execute("query-sev-capabilities", None) {
            Ok(v) => v,
            // Compiled in, but not available on this host.
            Err(e) if is_class(&e, "GenericError") => {
                self.caps.clear(Flag::SevGuest);
                return Ok(());
            }
            Err(e) => return Err(self.qmp_err(e)),
        };
        let u = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(cbitpos), Some(reduced_phys_bits), Some(pdh), Some(cert_chain)) = (
            u("cbitpos"),
            u("reduced-phys-bits"),
            s("pdh"),
            s("cert-chain"),
        ) else {
            return Err(self.reply_err(
                "query-sev-capabilities",
                "'cbitpos', 'reduced-phys-bits', 'pdh' or 'cert-chain'",
            ));
        };
        self.caps.sev = Some(SevCaps {
            cbitpos,
            reduced_phys_bits,
            pdh,
            cert_chain,
            cpu0_id: s("cpu0-id"),
            max_guests: 0,
            max_es_guests: 0,
        });
        Ok(())
    }

    fn sgx(&mut self) -> Result<(), ProbeError> {
        if !self.caps.has(Flag::SgxEpc) {
            return Ok(());
        }
        let v = match self.mon.execute("query-sgx-capabilities", None) {
            Ok(v) => v,
            Err(e) if is_class(&e, "GenericError") => {
                self.caps.clear(Flag::SgxEpc);
                return Ok(());
            }
            Err(e) => return Err(self.qmp_err(e)),
        };
        let b = |k: &str| v.get(k).and_then(Value::as_bool);
        let (Some(flc), Some(sgx1), Some(sgx2)) = (b("flc"), b("sgx1"), b("sgx2")) else {
            return Err(self.reply_err("query-sgx-capabilities", "'flc', 'sgx1' or 'sgx2'"));
        };
        // Without per-node sections (QEMU < 7.0) libvirt treats SGX as
        // unsupported.
        let Some(secs) = v.get("sections").and_then(Value::as_array) else {
            self.caps.clear(Flag::SgxEpc);
            return Ok(());
        };
        let mut sections = Vec::new();
        for sec in secs {
            let (Some(size), Some(node)) = (
                sec.get("size").and_then(Value::as_u64),
                sec.get("node").and_then(Value::as_u64),
            ) else {
                return Err(self.reply_err("query-sgx-capabilities", "'size' or 'node'"));
            };
            sections.push(SgxSection {
                node: u32::try_from(node).unwrap_or(0),
                size_kib: size / 1024,
            });
        }
        let section_size_kib = match v.get("section-size") {
            Some(s) => {
                s.as_u64()
                    .ok_or_else(|| self.reply_err("query-sgx-capabilities", "'section-size'"))?
                    / 1024
            }
            None => sections.iter().map(|s| s.size_kib).sum(),
        };
        self.caps.sgx = Some(SgxCaps {
            flc,
            sgx1,
            sgx2,
            section_size_kib,
            sections,
        });
        Ok(())
    }

    /// Flags derived from other flags (`virQEMUCapsInitProcessCaps`).
    fn process_caps(&mut self) {
        let caps = &mut *self.caps;
        if caps.is_x86() && caps.has(Flag::QueryCpuModelExpansion) {
            caps.set(Flag::CpuCache);
        }
        if caps.has(Flag::CpuUnavailableFeatures) {
            caps.set(Flag::CanonicalCpuFeatures);
        }
        if matches!(caps.arch.as_str(), "sparc" | "m68k" | "mips") {
            caps.set(Flag::ScsiNcr53c90);
        }
        if caps.has(Flag::BlockdevReopen) && caps.has(Flag::MigrationParamBlockBitmapMapping) {
            caps.set(Flag::IncrementalBackup);
        }
        if caps.has(Flag::ObjectJson) {
            caps.set(Flag::CompatDeprecated);
        }
        if caps.has(Flag::MachineHpet) {
            caps.clear(Flag::NoHpet);
        }
    }

    /// One `query-cpu-model-expansion`; `None` on `GenericError`.
    fn expand_one(&self, kind: &str, model: Value) -> Result<Option<Value>, ProbeError> {
        match self.mon.execute(
            "query-cpu-model-expansion",
            Some(json!({ "type": kind, "model": model })),
        ) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            Ok(_) => Err(self.reply_err("query-cpu-model-expansion", "an object")),
            Err(e) if is_class(&e, "GenericError") => Ok(None),
            Err(e) => Err(self.qmp_err(e)),
        }
    }

    /// libvirt's `qemuMonitorJSONGetCPUModelExpansion`.
    fn expand(
        &self,
        kind: Expansion,
        model_name: &str,
        migratable: bool,
        hv_passthrough: bool,
        fail_no_props: bool,
    ) -> Result<Option<HostCpuInfo>, ProbeError> {
        let mut model = json!({ "name": model_name });
        if !migratable || hv_passthrough {
            let mut props = serde_json::Map::new();
            if !migratable {
                props.insert("migratable".into(), Value::Bool(false));
            }
            if hv_passthrough {
                props.insert("hv-passthrough".into(), Value::Bool(true));
            }
            model["props"] = Value::Object(props);
        }
        let first = if kind == Expansion::Full {
            "full"
        } else {
            "static"
        };
        let Some(mut data) = self.expand_one(first, model)? else {
            return Ok(None);
        };
        let mut cpu_model = self.expansion_model(&data, fail_no_props)?;
        if kind == Expansion::StaticFull {
            let Some(full) = self.expand_one("full", cpu_model.clone())? else {
                return Ok(None);
            };
            data = full;
            cpu_model = self.expansion_model(&data, fail_no_props)?;
        }
        let name = cpu_model
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut props = Vec::new();
        if let Some(obj) = cpu_model.get("props").and_then(Value::as_object) {
            for (k, v) in obj {
                let value = match v {
                    Value::String(s) => CpuPropValue::String(s.clone()),
                    Value::Bool(b) => CpuPropValue::Boolean(*b),
                    Value::Number(n) => match n.as_i64() {
                        Some(i) => CpuPropValue::Number(i),
                        None => continue,
                    },
                    _ => continue,
                };
                props.push(CpuProperty {
                    name: k.clone(),
                    value,
                    migratable: None,
                });
            }
        }
        Ok(Some(HostCpuInfo {
            model: name,
            migratability: false,
            props,
        }))
    }

    fn expansion_model(&self, data: &Value, fail_no_props: bool) -> Result<Value, ProbeError> {
        let model = data
            .get("model")
            .filter(|m| m.is_object())
            .ok_or_else(|| self.reply_err("query-cpu-model-expansion", "'model'"))?;
        if model.get("name").and_then(Value::as_str).is_none() {
            return Err(self.reply_err("query-cpu-model-expansion", "'name'"));
        }
        if fail_no_props && model.get("props").and_then(Value::as_object).is_none() {
            return Err(self.reply_err("query-cpu-model-expansion", "'props'"));
        }
        Ok(model.clone())
    }

    /// `virQEMUCapsProbeQMPHostCPU`. `accelerated` is libvirt's
    /// `virQEMUCapsTypeIsAccelerated`: true for anything but TCG's phase.
    fn host_cpu(&mut self, accel: Accel, accelerated: bool) -> Result<(), ProbeError> {
        if !self.caps.has(Flag::QueryCpuModelExpansion) {
            return Ok(());
        }
        let arch = self.caps.arch.clone();
        let model = if accelerated { "host" } else { "max" };
        let kind = if arch::is_x86(&arch) && !self.caps.has(Flag::CanonicalCpuFeatures) {
            Expansion::StaticFull
        } else if arch::is_arm(&arch) {
            Expansion::Full
        } else {
            Expansion::Static
        };
        let fail_no_props = !arch::is_s390(&arch);
        let mut info = self.expand(kind, model, true, false, fail_no_props)?;
        if let Some(info) = info.as_mut().filter(|_| arch::is_x86(&arch)) {
            if let Some(non_migratable) = self.expand(kind, model, false, false, fail_no_props)? {
                for nm in &non_migratable.props {
                    let Some(p) = info.props.iter_mut().find(|p| p.name == nm.name) else {
                        continue;
                    };
                    let (CpuPropValue::Boolean(mig), CpuPropValue::Boolean(non)) =
                        (&p.value, &nm.value)
                    else {
                        continue;
                    };
                    if *mig {
                        p.migratable = Some(true);
                    } else if *non {
                        p.value = CpuPropValue::Boolean(true);
                        p.migratable = Some(false);
                    }
                }
                info.migratability = true;
            }
        }
        if accelerated && (arch::is_x86(&arch) || arch::is_arm(&arch)) {
            if let Some(full) = self.expand(Expansion::Full, model, false, true, true)? {
                self.hyperv(&full);
            }
        }
        self.caps.accel_mut(accel).host_cpu = info;
        Ok(())
    }

    fn hyperv(&mut self, full: &HostCpuInfo) {
        let mut set = [false; HYPERV_FEATURES.len()];
        for p in &full.props {
            let Some(name) = p.name.strip_prefix("hv-") else {
                continue;
            };
            let idx = HYPERV_FEATURES.iter().position(|f| *f == name).or_else(|| {
                let underscored = name.replace('-', "_");
                HYPERV_FEATURES.iter().position(|f| *f == underscored)
            });
            let Some(idx) = idx else { continue };
            let on = match &p.value {
                CpuPropValue::Boolean(b) => *b,
                CpuPropValue::Number(n) => *n > 0,
                CpuPropValue::String(_) => true,
            };
            if on {
                set[idx] = true;
            }
        }
        if !set.iter().any(|&b| b) {
            // Older QEMU neither failed nor expanded the features.
            return;
        }
        self.caps.hyperv = Some(HypervCaps {
            supported: true,
            features: HYPERV_FEATURES
                .iter()
                .zip(set)
                .filter(|(_, on)| *on)
                .map(|(f, _)| f.to_string())
                .collect(),
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expansion {
    Static,
    StaticFull,
    Full,
}

/// Phase 1 (`virQEMUCapsInitQMPMonitor`): everything but TCG's data when a
/// hardware accelerator is found. `mon` must have negotiated capabilities.
/// `hvf_usable` says whether macOS Hypervisor.framework can be used for this
/// binary (always false on Linux).
pub fn probe_main_phase(
    caps: &mut QemuCaps,
    mon: &dyn Monitor,
    hvf_usable: bool,
) -> Result<(), ProbeError> {
    let mut p = Prober { caps, mon };
    p.version()?;
    p.target()?;
    p.basic_arch();
    if p.caps.version < 5_002_000 {
        p.caps.set(Flag::EnableFips);
    }
    p.schema()?;
    p.commands()?;
    p.kvm_state()?;
    if hvf_usable {
        p.caps.set(Flag::Hvf);
    }
    // libvirt picks the accelerator before the QOM types (and so `tcg`)
    // are known: KVM, HVF, or else TCG's slot with "host" expansion.
    let accel = if p.caps.has(Flag::Kvm) {
        Accel::Kvm
    } else if p.caps.has(Flag::Hvf) {
        Accel::Hvf
    } else {
        Accel::Tcg
    };
    p.object_types()?;
    p.device_props()?;
    p.object_props()?;
    p.machine_types(accel)?;
    p.machine_props(accel)?;
    p.cpu_definitions(accel)?;
    p.tpm()?;
    p.command_line()?;
    p.migration()?;
    p.gic()?;
    p.sev()?;
    p.sgx()?;
    p.process_caps();
    p.host_cpu(accel, true)?;
    Ok(())
}

/// Phase 2 (`virQEMUCapsInitQMPMonitorTCG`): TCG's CPU models, host CPU and
/// machines, on a QEMU started with `accel=tcg`.
pub fn probe_tcg_phase(caps: &mut QemuCaps, mon: &dyn Monitor) -> Result<(), ProbeError> {
    let mut p = Prober { caps, mon };
    p.cpu_definitions(Accel::Tcg)?;
    p.host_cpu(Accel::Tcg, false)?;
    p.machine_types(Accel::Tcg)?;
    Ok(())
}

/// Whether a second, TCG-only run is needed after phase 1 (libvirt:
/// a hardware accelerator was found and TCG is available).
pub fn needs_tcg_phase(caps: &QemuCaps) -> bool {
    caps.has_hw_accel() && caps.has(Flag::Tcg)
}

/// What a replayed probe left over: requests the transcript could not answer
/// and recorded entries never requested. Both mean the probe diverged from
/// libvirt's sequence.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Requests with no recorded answer.
    pub unanswered: Vec<qvisor_qmp::replay::Divergence>,
    /// Recorded entries never requested (phases not entered included).
    pub unused: Vec<qvisor_qmp::replay::Divergence>,
}

impl ReplayReport {
    /// Whether the probe followed the transcript exactly.
    pub fn is_clean(&self) -> bool {
        self.unanswered.is_empty() && self.unused.is_empty()
    }
}

/// Errors of [`probe_replay`].
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The transcript does not parse.
    #[error("invalid QMP transcript: {0}")]
    Transcript(#[from] qvisor_qmp::replay::TranscriptError),
    /// The monitor handshake failed.
    #[error("QMP handshake with the replayed monitor failed: {0}")]
    Handshake(#[source] qvisor_qmp::Error),
    /// Probing failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Probes `binary` against a recorded transcript (libvirt's `.replies`
/// format) instead of a live QEMU: the same phases and queries as a live
/// probe, through the real QMP client. With `strict`, the first request
/// without a recorded answer ends the replay (the probe then fails).
pub fn probe_replay(
    binary: &str,
    transcript: &str,
    strict: bool,
) -> Result<(QemuCaps, ReplayReport), ReplayError> {
    use qvisor_qmp::replay::{Replay, Transcript};
    use qvisor_qmp::{ClientOptions, QmpClient};

    let transcript = Transcript::parse(transcript)?;
    let replay = Replay::new(transcript.clone(), strict);
    let options = ClientOptions {
        timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let connect = || {
        let (r, w, close) = replay.connect();
        QmpClient::from_stream(r, w, close, options.clone()).map_err(ReplayError::Handshake)
    };
    let mut caps = QemuCaps::new(binary);
    {
        let mon = connect()?;
        probe_main_phase(&mut caps, &mon, false)?;
    }
    if needs_tcg_phase(&caps) {
        let mon = connect()?;
        probe_tcg_phase(&mut caps, &mon)?;
    }
    let mut unused = replay.unused();
    // Phases never entered are unused entirely.
    for (i, phase) in transcript
        .phases
        .iter()
        .enumerate()
        .skip(replay.phases_entered())
    {
        for e in phase {
            unused.push(qvisor_qmp::replay::Divergence {
                phase: i + 1,
                execute: e.execute.clone(),
                arguments: e.arguments.clone(),
            });
        }
    }
    Ok((
        caps,
        ReplayReport {
            unanswered: replay.unanswered(),
            unused,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS_DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/caps"
    );
    const VERSIONS: [&str; 9] = [
        "4.2.0", "5.0.0", "5.1.0", "5.2.0", "6.1.0", "6.2.0", "7.0.0", "7.2.0", "8.0.0",
    ];

    /// Compares the way check.py does (flags, version, package, arch,
    /// machines and CPU models per accelerator) and more: the whole
    /// document except libvirt's host-dependent bookkeeping.
    fn replay_matches(version: &str) {
        let Ok(replies) =
            std::fs::read_to_string(format!("{CAPS_DIR}/caps_{version}.x86_64.replies"))
        else {
            eprintln!("skipping: {CAPS_DIR} not available");
            return;
        };
        let expected_text =
            std::fs::read_to_string(format!("{CAPS_DIR}/caps_{version}.x86_64.xml")).unwrap();
        let expected = QemuCaps::from_cache_xml(&expected_text).unwrap();
        let (mut got, report) =
            probe_replay("/usr/bin/qemu-system-x86_64", &replies, true).unwrap();
        assert!(
            report.is_clean(),
            "caps_{version}: diverged from libvirt: {report:?}"
        );
        let missing: Vec<_> = expected.flags.iter().filter(|f| !got.has(*f)).collect();
        let extra: Vec<_> = got.flags.iter().filter(|f| !expected.has(*f)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "caps_{version}: missing {missing:?} extra {extra:?}"
        );
        got.microcode_version = expected.microcode_version;
        assert_eq!(
            got.to_cache_xml(),
            expected_text,
            "caps_{version}: whole document"
        );
    }

    #[test]
    fn replay_4_2_0() {
        replay_matches("4.2.0");
    }
    #[test]
    fn replay_5_0_0() {
        replay_matches("5.0.0");
    }
    #[test]
    fn replay_5_1_0() {
        replay_matches("5.1.0");
    }
    #[test]
    fn replay_5_2_0() {
        replay_matches("5.2.0");
    }
    #[test]
    fn replay_6_1_0() {
        replay_matches("6.1.0");
    }
    #[test]
    fn replay_6_2_0() {
        replay_matches("6.2.0");
    }
    #[test]
    fn replay_7_0_0() {
        replay_matches("7.0.0");
    }
    #[test]
    fn replay_7_2_0() {
        replay_matches("7.2.0");
    }
    #[test]
    fn replay_8_0_0() {
        replay_matches("8.0.0");
    }

    #[test]
    fn replay_of_a_truncated_transcript_fails_cleanly() {
        let Ok(replies) =
            std::fs::read_to_string(format!("{CAPS_DIR}/caps_{}.x86_64.replies", VERSIONS[8]))
        else {
            return;
        };
        let cut: String = replies
            .split("\n\n")
            .take(20)
            .collect::<Vec<_>>()
            .join("\n\n");
        let err = probe_replay("/usr/bin/qemu-system-x86_64", &cut, false).unwrap_err();
        assert!(err.to_string().contains("qemu-system-x86_64"), "{err}");
    }

    #[test]
    fn too_old_qemu_is_refused() {
        let t = r#"{"execute": "qmp_capabilities", "id": "libvirt-1"}

{"return": {}, "id": "libvirt-1"}

{"execute": "query-version", "id": "libvirt-2"}

{"return": {"qemu": {"major": 4, "minor": 1, "micro": 0}, "package": ""}, "id": "libvirt-2"}
"#;
        let err = probe_replay("/q", t, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "QEMU version >= 4.2.0 is required, but 4.1.0 found"
        );
    }
}
