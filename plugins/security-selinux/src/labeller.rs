//! Which label QEMU and each of its files get, and applying/restoring them.
//!
//! A dynamic `<seclabel>` (the default) gets a fresh category pair: QEMU
//! runs as `svirt_t:s0:cX,cY` (`svirt_tcg_t` for TCG domains) and its files
//! become `svirt_image_t:s0:cX,cY`, so no other guest can open them.
//! `<shareable/>` disks get `svirt_image_t:s0` (every guest may use them),
//! read-only images and boot files `virt_content_t:s0`. A static label is
//! applied as written, with `relabel='no'` leaving files alone. Device nodes
//! such as `/dev/kvm` keep their policy labels. Originals are remembered in
//! `trusted.libvirt.security.selinux` (with a reference count, like DAC).

use std::path::Path;

use qvisor_sdk::{Access, DomainContext, LabelRecord, Resource, ResourceKind};
use qvisor_security_common::remember::{Recall, Store};
use qvisor_security_common::xattr;

use crate::context::Context;
use crate::mcs::{CategoryRange, Mcs, Random};

/// The attribute holding a file's context.
pub const XATTR: &str = "security.selinux";

/// The contexts of the loaded policy (Fedora/RHEL's targeted policy names
/// by default; `/etc/selinux/<policy>/contexts/virtual_*_context` override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `system_u:system_r:svirt_t:s0`.
    pub domain: Context,
    /// `system_u:system_r:svirt_tcg_t:s0`: TCG guests need `execmem`.
    pub tcg_domain: Context,
    /// `system_u:object_r:svirt_image_t:s0`.
    pub image: Context,
    /// `system_u:object_r:virt_content_t:s0`: read-only content.
    pub content: Context,
    /// Where category pairs are drawn from.
    pub categories: CategoryRange,
}

impl Default for Policy {
    fn default() -> Self {
        let c = |s: &str| Context::parse(s).unwrap_or_else(|| unreachable_context(s));
        Policy {
            domain: c("system_u:system_r:svirt_t:s0"),
            tcg_domain: c("system_u:system_r:svirt_tcg_t:s0"),
            image: c("system_u:object_r:svirt_image_t:s0"),
            content: c("system_u:object_r:virt_content_t:s0"),
            categories: CategoryRange {
                sensitivity: "s0".into(),
                min: 0,
                max: 1023,
            },
        }
    }
}

fn unreachable_context(s: &str) -> Context {
    // The literals above always parse; keep a valid value rather than panic.
    Context {
        user: "system_u".into(),
        role: "object_r".into(),
        kind: s.into(),
        range: "s0".into(),
    }
}

/// The domain's `<seclabel model='selinux'>`, from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seclabel {
    /// `dynamic`, `static` or `none`.
    pub kind: String,
    /// `relabel=`.
    pub relabel: bool,
    /// `<label>`.
    pub label: Option<String>,
    /// `<imagelabel>`.
    pub imagelabel: Option<String>,
    /// `<baselabel>`.
    pub baselabel: Option<String>,
}

impl Seclabel {
    /// Reads `seclabel.selinux.*` from the context's settings.
    pub fn of(ctx: &DomainContext) -> Seclabel {
        let get = |f: &str| {
            ctx.setting(&format!("seclabel.selinux.{f}"))
                .map(str::to_string)
        };
        let kind = get("type").unwrap_or_else(|| "dynamic".into());
        let relabel = match get("relabel").as_deref() {
            Some(v) => v == "yes",
            // libvirt: static labels default to relabel='no'.
            None => kind != "static",
        };
        Seclabel {
            kind,
            relabel,
            label: get("label"),
            imagelabel: get("imagelabel"),
            baselabel: get("baselabel"),
        }
    }
}

/// What a start will apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// QEMU's context.
    pub process: String,
    /// The domain's image context.
    pub image: String,
    /// `dynamic` or `static`.
    pub kind: String,
    /// Whether files are relabelled.
    pub relabel: bool,
    /// The category pair taken for this domain (released at restore).
    pub mcs: String,
    /// (file, context, restore later) in order.
    pub files: Vec<(String, String, bool)>,
}

impl Plan {
    /// The `<seclabel>` for the live XML.
    pub fn seclabel_xml(&self) -> String {
        format!(
            "<seclabel type='{}' model='selinux' relabel='{}'><label>{}</label><imagelabel>{}</imagelabel></seclabel>",
            self.kind,
            if self.relabel { "yes" } else { "no" },
            self.process,
            self.image
        )
    }
}

/// Labels for one host: the policy and the pairs in use.
#[derive(Debug, Default)]
pub struct Labeller {
    /// The policy's contexts.
    pub policy: Policy,
    /// Category pairs in use.
    pub mcs: Mcs,
}

/// The context for one resource, and whether it is restored after stop.
fn file_label(r: &Resource, image: &Context, policy: &Policy) -> Option<(String, bool)> {
    let sens = image.sensitivity().to_string();
    match (r.kind, r.access) {
        (ResourceKind::Device, _) => None,
        (ResourceKind::Disk, Access::ReadOnly) => {
            Some((policy.content.with_range(&sens).to_string(), false))
        }
        (ResourceKind::Kernel | ResourceKind::Initrd | ResourceKind::Loader, _) => {
            Some((policy.content.with_range(&sens).to_string(), true))
        }
        (ResourceKind::Disk, Access::ReadWrite) if r.shared => {
            Some((policy.image.with_range(&sens).to_string(), true))
        }
        _ => Some((image.to_string(), true)),
    }
}

impl Labeller {
    /// Decides the labels of a domain; a dynamic label takes a fresh pair.
    /// `None` for `<seclabel type='none'>`.
    pub fn plan(
        &mut self,
        ctx: &DomainContext,
        rng: &mut dyn Random,
    ) -> Result<Option<Plan>, String> {
        let sec = Seclabel::of(ctx);
        let (process, image, mcs) = match sec.kind.as_str() {
            "none" => return Ok(None),
            "static" => {
                let label = sec
                    .label
                    .clone()
                    .ok_or("a static SELinux seclabel needs a <label>")?;
                let process = Context::parse(&label)
                    .ok_or_else(|| format!("invalid SELinux context '{label}'"))?;
                if !self.mcs.reserve(&process.range) {
                    return Err(format!(
                        "SELinux category pair {} of static label '{label}' is already in use by another domain",
                        process.range
                    ));
                }
                let image = match &sec.imagelabel {
                    Some(i) => {
                        Context::parse(i).ok_or_else(|| format!("invalid SELinux context '{i}'"))?
                    }
                    None => self.policy.image.with_range(&process.range),
                };
                (process, image, process_range(&label))
            }
            "dynamic" => {
                let taken = ctx
                    .setting("state_dir")
                    .map(|d| recorded_pairs(Path::new(d)))
                    .unwrap_or_default();
                let mcs = self
                    .mcs
                    .allocate_avoiding(&self.policy.categories, rng, &taken)
                    .map_err(|e| e.to_string())?;
                let base = match &sec.baselabel {
                    Some(b) => {
                        Context::parse(b).ok_or_else(|| format!("invalid SELinux context '{b}'"))?
                    }
                    None if ctx.virt_type.as_str() == "qemu" => self.policy.tcg_domain.clone(),
                    None => self.policy.domain.clone(),
                };
                (
                    base.with_range(&mcs),
                    self.policy.image.with_range(&mcs),
                    mcs,
                )
            }
            other => return Err(format!("unknown SELinux seclabel type '{other}'")),
        };
        let mut files = Vec::new();
        if sec.relabel {
            for r in ctx.resources.iter() {
                let keep = ctx
                    .settings
                    .iter()
                    .any(|s| s.key.as_str() == "norelabel.selinux" && s.value == r.path);
                if keep {
                    continue;
                }
                if let Some((label, restore)) = file_label(r, &image, &self.policy) {
                    if !files.iter().any(|(p, _, _)| p == r.path.as_str()) {
                        files.push((r.path.to_string(), label, restore));
                    }
                }
            }
        }
        Ok(Some(Plan {
            process: process.to_string(),
            image: image.to_string(),
            kind: sec.kind,
            relabel: sec.relabel,
            mcs,
            files,
        }))
    }

    /// Frees what `plan` took (a start that failed before labelling).
    pub fn forget(&mut self, plan: &Plan) {
        self.mcs.release(&plan.mcs);
    }

    /// Applies the file labels of `plan`; returns the records to keep. On
    /// failure every label applied so far is restored.
    pub fn apply(plan: &Plan, store: Option<&Store>) -> Result<Vec<LabelRecord>, String> {
        let mut records = vec![LabelRecord {
            path: "".into(),
            data: plan.seclabel_xml().into(),
        }];
        for (path, label, restore) in &plan.files {
            let p = Path::new(path);
            let original = match xattr::get_string(p, XATTR) {
                Ok(o) => o.unwrap_or_default(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if xattr::is_unsupported(&e) => continue,
                Err(e) => {
                    Self::restore(&records, store);
                    return Err(format!("cannot read the context of '{path}': {e}"));
                }
            };
            let mut data = None;
            if *restore {
                data = Some(format!("label={original}"));
                if let Some(store) = store {
                    match store.remember(p, &original) {
                        Ok(Some(_)) => data = Some("remember".into()),
                        Ok(None) => {}
                        Err(e) => {
                            Self::restore(&records, store.into());
                            return Err(format!("cannot remember the context of '{path}': {e}"));
                        }
                    }
                }
            }
            let mut value = label.clone().into_bytes();
            value.push(0);
            if let Err(e) = xattr::set(p, XATTR, &value) {
                if data.as_deref() == Some("remember") {
                    if let Some(store) = store {
                        let _ = store.recall(p);
                    }
                }
                if xattr::is_unsupported(&e) {
                    continue;
                }
                Self::restore(&records, store);
                return Err(format!(
                    "unable to set security context '{label}' on '{path}': {e}"
                ));
            }
            if let Some(data) = data {
                records.push(LabelRecord {
                    path: path.as_str().into(),
                    data: data.into(),
                });
            }
        }
        Ok(records)
    }

    /// Puts back the contexts `records` describe (file records only).
    /// Returns the failures.
    pub fn restore(records: &[LabelRecord], store: Option<&Store>) -> Vec<String> {
        let mut failures = Vec::new();
        for rec in records.iter().rev().filter(|r| !r.path.is_empty()) {
            let p = Path::new(rec.path.as_str());
            let original = match rec.data.as_str() {
                "remember" => match store.map(|s| s.recall(p)) {
                    Some(Ok(Recall::Restore(l))) => Some(l),
                    Some(Ok(_)) | None => None,
                    Some(Err(e)) => {
                        failures.push(format!("cannot recall the context of '{}': {e}", rec.path));
                        None
                    }
                },
                other => other.strip_prefix("label=").map(str::to_string),
            };
            let Some(original) = original else { continue };
            let r = if original.is_empty() {
                xattr::remove(p, XATTR)
            } else {
                let mut v = original.clone().into_bytes();
                v.push(0);
                xattr::set(p, XATTR, &v)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failures.push(format!(
                        "cannot restore context '{original}' on '{}': {e}",
                        rec.path
                    ));
                }
            }
        }
        failures
    }

    /// Frees the pair recorded in a process record (dynamic labels only).
    pub fn release_recorded(&mut self, records: &[LabelRecord]) {
        for rec in records.iter().filter(|r| r.path.is_empty()) {
            let data = rec.data.as_str();
            if !data.contains("type='dynamic'") {
                continue;
            }
            if let Some(label) = data
                .split_once("<label>")
                .and_then(|(_, rest)| rest.split_once("</label>"))
                .map(|(l, _)| l)
            {
                self.mcs.release(&process_range(label));
            }
        }
    }
}

/// The dynamic SELinux category pairs recorded in the status files of
/// running domains under `state_dir` (`<domstatus>` documents holding the
/// live XML): pairs a restarted supervisor must not hand out again.
pub fn recorded_pairs(state_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(state_dir) else {
        return out;
    };
    for e in rd.flatten() {
        if e.path().extension().is_none_or(|x| x != "xml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for part in text.split("<seclabel").skip(1) {
            let head = part.split('>').next().unwrap_or_default();
            let model_selinux =
                head.contains("model='selinux'") || head.contains("model=\"selinux\"");
            let dynamic = head.contains("type='dynamic'") || head.contains("type=\"dynamic\"");
            if !(model_selinux && dynamic) {
                continue;
            }
            let body = part.split("</seclabel>").next().unwrap_or_default();
            if let Some(label) = body
                .split_once("<label>")
                .and_then(|(_, r)| r.split_once("</label>"))
                .map(|(l, _)| l.trim())
            {
                let range = process_range(label);
                if !range.is_empty() {
                    out.insert(range);
                }
            }
        }
    }
    out
}

/// The range part of a context text.
fn process_range(label: &str) -> String {
    Context::parse(label).map(|c| c.range).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcs::tests::Script;
    use qvisor_sdk::prelude::{RString, RVec};
    use qvisor_sdk::Setting;

    fn ctx(virt: &str, settings: &[(&str, &str)], resources: Vec<Resource>) -> DomainContext {
        DomainContext {
            name: "d".into(),
            uuid: "u".into(),
            virt_type: virt.into(),
            emulator: RString::new(),
            xml: RString::new(),
            private_dir: RString::new(),
            uid: 0,
            gid: 0,
            resources: resources.into(),
            settings: settings.iter().map(|(k, v)| Setting::new(*k, *v)).collect(),
            labels: RVec::new(),
        }
    }

    fn res(path: &str, kind: ResourceKind, access: Access, shared: bool) -> Resource {
        Resource {
            path: path.into(),
            kind,
            access,
            shared,
        }
    }

    #[test]
    fn a_dynamic_label_gives_process_and_images_the_same_pair() {
        let mut l = Labeller::default();
        let c = ctx(
            "kvm",
            &[],
            vec![
                res("/i/a.img", ResourceKind::Disk, Access::ReadWrite, false),
                res("/i/shared.img", ResourceKind::Disk, Access::ReadWrite, true),
                res("/i/base.img", ResourceKind::Disk, Access::ReadOnly, true),
                res("/b/vmlinuz", ResourceKind::Kernel, Access::ReadOnly, false),
                res("/dev/kvm", ResourceKind::Device, Access::ReadWrite, false),
            ],
        );
        let p = l.plan(&c, &mut Script(vec![12, 3])).unwrap().unwrap();
        assert_eq!(p.process, "system_u:system_r:svirt_t:s0:c3,c12");
        assert_eq!(p.image, "system_u:object_r:svirt_image_t:s0:c3,c12");
        assert_eq!(
            p.files,
            vec![
                (
                    "/i/a.img".into(),
                    "system_u:object_r:svirt_image_t:s0:c3,c12".into(),
                    true
                ),
                (
                    "/i/shared.img".into(),
                    "system_u:object_r:svirt_image_t:s0".into(),
                    true
                ),
                (
                    "/i/base.img".into(),
                    "system_u:object_r:virt_content_t:s0".into(),
                    false
                ),
                (
                    "/b/vmlinuz".into(),
                    "system_u:object_r:virt_content_t:s0".into(),
                    true
                ),
            ]
        );
        assert!(l.mcs.in_use("s0:c3,c12"));
    }

    #[test]
    fn pairs_in_status_files_of_running_domains_are_not_reused() {
        let dir =
            std::env::temp_dir().join(format!("qvisor-selinux-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("old.xml"),
            "<domstatus state='running'><domain type='kvm'><name>old</name>\
             <seclabel type='dynamic' model='selinux' relabel='yes'>\
             <label>system_u:system_r:svirt_t:s0:c7,c8</label></seclabel>\
             <seclabel type='dynamic' model='dac' relabel='yes'><label>+0:+0</label></seclabel>\
             </domain></domstatus>",
        )
        .unwrap();
        let pairs = recorded_pairs(&dir);
        let mut l = Labeller::default();
        let d = dir.display().to_string();
        let p = l
            .plan(
                &ctx("kvm", &[("state_dir", d.as_str())], vec![]),
                &mut Script(vec![8, 7, 1, 9]),
            )
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(pairs, ["s0:c7,c8".to_string()].into());
        assert_eq!(p.mcs, "s0:c1,c9");
    }

    #[test]
    fn tcg_domains_run_as_svirt_tcg_t() {
        let mut l = Labeller::default();
        let p = l
            .plan(&ctx("qemu", &[], vec![]), &mut Script(vec![1, 2]))
            .unwrap()
            .unwrap();
        assert_eq!(p.process, "system_u:system_r:svirt_tcg_t:s0:c1,c2");
    }

    #[test]
    fn a_static_label_is_used_as_written_and_reserves_its_pair() {
        let mut l = Labeller::default();
        let settings = [
            ("seclabel.selinux.type", "static"),
            ("seclabel.selinux.relabel", "yes"),
            (
                "seclabel.selinux.label",
                "system_u:system_r:svirt_t:s0:c10,c20",
            ),
        ];
        let p = l
            .plan(
                &ctx(
                    "kvm",
                    &settings,
                    vec![res(
                        "/i/a.img",
                        ResourceKind::Disk,
                        Access::ReadWrite,
                        false,
                    )],
                ),
                &mut Script(vec![]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(p.process, "system_u:system_r:svirt_t:s0:c10,c20");
        assert_eq!(p.files[0].1, "system_u:object_r:svirt_image_t:s0:c10,c20");
        // A dynamic domain drawing that pair gets another one.
        let q = l
            .plan(&ctx("kvm", &[], vec![]), &mut Script(vec![20, 10, 30, 40]))
            .unwrap()
            .unwrap();
        assert_eq!(q.mcs, "s0:c30,c40");
        // A second static domain with the same pair is refused.
        assert!(l
            .plan(&ctx("kvm", &settings, vec![]), &mut Script(vec![]))
            .is_err());
    }

    #[test]
    fn relabel_no_leaves_files_alone() {
        let mut l = Labeller::default();
        let settings = [
            ("seclabel.selinux.type", "static"),
            (
                "seclabel.selinux.label",
                "system_u:system_r:svirt_t:s0:c1,c9",
            ),
        ];
        let p = l
            .plan(
                &ctx(
                    "kvm",
                    &settings,
                    vec![res(
                        "/i/a.img",
                        ResourceKind::Disk,
                        Access::ReadWrite,
                        false,
                    )],
                ),
                &mut Script(vec![]),
            )
            .unwrap()
            .unwrap();
        assert!(!p.relabel && p.files.is_empty());
        assert!(p.seclabel_xml().contains("relabel='no'"));
    }

    #[test]
    fn none_means_no_labels() {
        let mut l = Labeller::default();
        let c = ctx("kvm", &[("seclabel.selinux.type", "none")], vec![]);
        assert_eq!(l.plan(&c, &mut Script(vec![])).unwrap(), None);
    }

    #[test]
    fn released_pairs_can_be_drawn_again() {
        let mut l = Labeller::default();
        let p = l
            .plan(&ctx("kvm", &[], vec![]), &mut Script(vec![4, 5]))
            .unwrap()
            .unwrap();
        let records = Labeller::apply(&p, None).unwrap();
        l.release_recorded(&records);
        assert!(!l.mcs.in_use("s0:c4,c5"));
    }

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Whether security.* and trusted.* xattrs can be set here.
    fn xattrs_work(dir: &Path) -> bool {
        let f = dir.join("probe");
        std::fs::write(&f, b"").unwrap();
        let ok = xattr::set(&f, XATTR, b"x\0").is_ok()
            && xattr::set(&f, "trusted.qvisor.probe", b"1").is_ok();
        if !ok {
            eprintln!("skipping: cannot set security.selinux/trusted.* xattrs here (needs root)");
        }
        ok
    }

    #[test]
    fn files_are_relabelled_and_get_their_contexts_back() {
        let dir =
            std::env::temp_dir().join(format!("qvisor-selinux-relabel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _t = Tmp(dir.clone());
        if !xattrs_work(&dir) {
            return;
        }
        let (own, shared, ro, bare) = (
            dir.join("own.img"),
            dir.join("shared.img"),
            dir.join("ro.img"),
            dir.join("bare.img"),
        );
        for f in [&own, &shared, &ro, &bare] {
            std::fs::write(f, b"x").unwrap();
        }
        for f in [&own, &shared, &ro] {
            xattr::set(f, XATTR, b"unconfined_u:object_r:user_home_t:s0\0").unwrap();
        }
        let path = |p: &Path| p.display().to_string();
        let resources = vec![
            res(&path(&own), ResourceKind::Disk, Access::ReadWrite, false),
            res(&path(&shared), ResourceKind::Disk, Access::ReadWrite, true),
            res(&path(&ro), ResourceKind::Disk, Access::ReadOnly, false),
            res(&path(&bare), ResourceKind::Log, Access::ReadWrite, false),
        ];
        let store = Store::with_boot_time("selinux", 7);
        let mut l = Labeller::default();
        let a = l
            .plan(&ctx("kvm", &[], resources.clone()), &mut Script(vec![1, 2]))
            .unwrap()
            .unwrap();
        let b = l
            .plan(
                &ctx("kvm", &[], vec![resources[1].clone()]),
                &mut Script(vec![3, 4]),
            )
            .unwrap()
            .unwrap();
        let ra = Labeller::apply(&a, Some(&store)).unwrap();
        let rb = Labeller::apply(&b, Some(&store)).unwrap();
        let label = |p: &Path| xattr::get_string(p, XATTR).unwrap();
        assert_eq!(
            label(&own).as_deref(),
            Some("system_u:object_r:svirt_image_t:s0:c1,c2")
        );
        assert_eq!(
            label(&shared).as_deref(),
            Some("system_u:object_r:svirt_image_t:s0")
        );
        assert_eq!(
            label(&ro).as_deref(),
            Some("system_u:object_r:virt_content_t:s0")
        );
        assert_eq!(
            label(&bare).as_deref(),
            Some("system_u:object_r:svirt_image_t:s0:c1,c2")
        );
        // The first domain stops: its own files come back; the shared disk
        // stays labelled for the second.
        assert!(Labeller::restore(&ra, Some(&store)).is_empty());
        assert_eq!(
            label(&own).as_deref(),
            Some("unconfined_u:object_r:user_home_t:s0")
        );
        assert_eq!(label(&bare), None);
        assert_eq!(
            label(&shared).as_deref(),
            Some("system_u:object_r:svirt_image_t:s0")
        );
        // Read-only content is not taken back (other domains may read it).
        assert_eq!(
            label(&ro).as_deref(),
            Some("system_u:object_r:virt_content_t:s0")
        );
        assert!(Labeller::restore(&rb, Some(&store)).is_empty());
        assert_eq!(
            label(&shared).as_deref(),
            Some("unconfined_u:object_r:user_home_t:s0")
        );
    }
}
