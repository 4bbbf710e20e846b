//! The plugin microkernel: loading, ABI checks, panics, the default set.

use std::path::{Path, PathBuf};
use std::process::Command;

use qvisor_core::plugins::{
    load_plugin, CallError, CallPlugin, ListPlugins, LoadError, PluginSpec, PluginState,
    PluginStatus, Supervisor,
};
use qvisor_sdk::{DomainContext, PluginError, Reply, Request};
use qvisor_tests::{bin, example_plugin, fixtures, plugin_dir, some_non_plugin_library, TempDir};

fn spec(path: impl Into<PathBuf>, settings: &str) -> PluginSpec {
    PluginSpec {
        path: path.into(),
        settings: settings.to_string(),
    }
}

fn built(lib: &str) -> PathBuf {
    plugin_dir().join(format!("libqvisor_{lib}.so"))
}

fn status<'a>(all: &'a [PluginStatus], file: &Path) -> &'a PluginStatus {
    all.iter()
        .find(|s| s.file == file)
        .unwrap_or_else(|| panic!("no status for {}", file.display()))
}

fn domain(name: &str) -> DomainContext {
    DomainContext {
        name: name.into(),
        uuid: "00000000-0000-0000-0000-000000000001".into(),
        virt_type: "qemu".into(),
        emulator: "/usr/bin/qemu-system-x86_64".into(),
        xml: "<domain/>".into(),
        private_dir: "/nonexistent".into(),
        uid: 0,
        gid: 0,
        resources: Default::default(),
        settings: Default::default(),
        labels: Default::default(),
    }
}

#[test]
fn two_plugins_load_side_by_side_and_answer_as_themselves() {
    let (kvm, tcg) = (built("accel_kvm"), built("accel_tcg"));
    let specs = vec![spec(&kvm, "()"), spec(&tcg, "()")];
    actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        let all = sup.send(ListPlugins).await.unwrap();
        assert_eq!(status(&all, &kvm).name(), "accel-kvm");
        assert_eq!(status(&all, &tcg).name(), "accel-tcg");
        for (plugin, accel) in [("accel-kvm", "kvm"), ("accel-tcg", "tcg")] {
            let reply = sup
                .send(CallPlugin {
                    plugin: plugin.into(),
                    request: Request::CommandLine(Box::new(domain("side-by-side")).into()),
                })
                .await
                .unwrap();
            match reply {
                Ok(Reply::Accel(a)) => assert_eq!(a.accel.as_str(), accel, "{plugin}"),
                other => panic!("{plugin}: unexpected reply {other:?}"),
            }
        }
    });
}

#[test]
fn incompatible_sdk_is_refused_in_one_line_while_the_others_load() {
    let fx = fixtures();
    let tcg = built("accel_tcg");
    let specs = vec![
        spec(&fx.sdk_v02, "()"),
        spec(&tcg, "()"),
        spec(&fx.sdk_layout, "()"),
        spec(&fx.sdk_extended, "()"),
    ];
    let v02 = load_plugin(&fx.sdk_v02)
        .err()
        .expect("0.2 SDK must be refused");
    assert!(matches!(v02, LoadError::IncompatibleSdk { .. }), "{v02:?}");
    let msg = v02.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains(&fx.sdk_v02.display().to_string()),
        "names the file: {msg}"
    );
    assert!(
        msg.contains("0.2.0") && msg.contains(qvisor_sdk::SDK_VERSION),
        "{msg}"
    );

    let layout = load_plugin(&fx.sdk_layout)
        .err()
        .expect("changed layout must be refused");
    assert!(
        matches!(layout, LoadError::AbiMismatch { .. }),
        "{layout:?}"
    );
    assert!(!layout.to_string().contains('\n'), "one line: {layout}");

    actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        let all = sup.send(ListPlugins).await.unwrap();
        assert!(matches!(
            status(&all, &fx.sdk_v02).state,
            PluginState::Failed(_)
        ));
        assert!(matches!(
            status(&all, &fx.sdk_layout).state,
            PluginState::Failed(_)
        ));
        assert!(status(&all, &tcg).usable(), "{:?}", status(&all, &tcg));
        // An extra variant in a non-exhaustive enum is compatible by design.
        let ext = status(&all, &fx.sdk_extended);
        assert!(ext.usable(), "{ext:?}");
        assert_eq!(ext.name(), "incompatible");
    });
}

#[test]
fn a_panicking_plugin_yields_an_error_and_is_restarted() {
    let fx = fixtures();
    let tcg = built("accel_tcg");
    let specs = vec![spec(&fx.panic, "()"), spec(&tcg, "()")];
    actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        let call = |plugin: &str, request: Request| {
            sup.send(CallPlugin {
                plugin: plugin.into(),
                request,
            })
        };
        let err = call(
            "panic-plugin",
            Request::Prepare(Box::new(domain("boom")).into()),
        )
        .await
        .unwrap()
        .expect_err("prepare panics");
        match &err {
            CallError::Plugin {
                source: PluginError::Panicked(m),
                ..
            } => assert!(m.contains("deliberate panic while preparing 'boom'"), "{m}"),
            other => panic!("unexpected error {other:?}"),
        }
        // The supervisor keeps serving: the plugin answers again, as a fresh
        // instance (its per-instance call counter starts over).
        match call("panic-plugin", Request::Probe).await.unwrap() {
            Ok(Reply::Probe(p)) => assert_eq!(p.reason.as_str(), "probe call 0 of this instance"),
            other => panic!("unexpected reply {other:?}"),
        }
        assert!(matches!(
            call("accel-tcg", Request::Probe).await.unwrap(),
            Ok(Reply::Probe(_))
        ));
        let all = sup.send(ListPlugins).await.unwrap();
        assert_eq!(status(&all, &fx.panic).restarts, 1);
    });
}

#[test]
fn a_plugin_whose_constructor_panics_is_reported_and_the_rest_load() {
    let fx = fixtures();
    let tcg = built("accel_tcg");
    let specs = vec![spec(&fx.panic, "(panic_in_new: true)"), spec(&tcg, "()")];
    actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        let all = sup.send(ListPlugins).await.unwrap();
        let st = status(&all, &fx.panic);
        match &st.state {
            PluginState::Failed(r) => {
                assert!(r.contains("deliberate panic in the constructor"), "{r}")
            }
            other => panic!("unexpected state {other:?}"),
        }
        assert!(status(&all, &tcg).usable());
    });
}

#[test]
fn missing_file_and_non_plugin_libraries_give_clear_errors() {
    let tmp = TempDir::new("loaderr");
    let missing = tmp.path().join("libqvisor_missing.so");
    let e = load_plugin(&missing).err().expect("missing file");
    assert_eq!(
        e.to_string(),
        format!("plugin '{}': no such file", missing.display())
    );

    let libc = some_non_plugin_library();
    let e = load_plugin(&libc).err().expect("libc is no plugin");
    assert!(matches!(e, LoadError::NotAPlugin { .. }), "{e:?}");
    assert!(e.to_string().contains("not a qvisor plugin"), "{e}");

    let text = tmp.path().join("libqvisor_text.so");
    std::fs::write(&text, "not an ELF file").unwrap();
    let e = load_plugin(&text).err().expect("text file is no plugin");
    assert!(matches!(e, LoadError::NotAPlugin { .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'));
}

fn host_selinux_enabled() -> bool {
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| m.contains(" selinuxfs "))
}

fn host_apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

fn host_kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

#[test]
fn qvisor_plugins_lists_the_default_set_truthfully() {
    let tmp = TempDir::new("plugins-cli");
    let out = Command::new(bin("qvisor"))
        .args(["plugins", "--json", "-c"])
        .arg(format!("qemu:///embed?root={}", tmp.path().display()))
        .env_remove("QVISOR_PLUGIN_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = |name: &str| -> (String, String) {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("plugin {name} not listed: {rows:#}"));
        assert_eq!(row["sdk"], qvisor_sdk::SDK_VERSION, "{name}");
        assert!(row["file"].as_str().unwrap().ends_with(".so"), "{name}");
        (
            row["state"].as_str().unwrap().to_string(),
            row["reason"].as_str().unwrap().to_string(),
        )
    };
    let expect = |name: &str, usable: bool| {
        let (st, reason) = state(name);
        assert_eq!(
            st,
            if usable { "usable" } else { "unusable" },
            "{name}: {reason}"
        );
        assert!(!reason.is_empty(), "{name} gives a reason");
        reason
    };
    expect("accel-kvm", host_kvm_usable());
    expect("accel-tcg", true);
    let hvf = expect("accel-hvf", cfg!(target_os = "macos"));
    assert!(hvf.contains("macOS"), "{hvf}");
    expect("security-selinux", host_selinux_enabled());
    expect("security-apparmor", host_apparmor_enabled());
    expect("storage", true);
}

#[test]
fn the_documented_out_of_tree_example_builds_and_loads() {
    let lib = example_plugin().to_path_buf();
    let specs = vec![spec(&lib, "(greeting: \"hi\")")];
    actix_rt::System::new().block_on(async move {
        let sup = Supervisor::start(specs, None).await;
        let all = sup.send(ListPlugins).await.unwrap();
        let st = status(&all, &lib);
        assert_eq!(st.name(), "hello");
        assert!(st.usable(), "{st:?}");
        assert!(
            st.state.reason().contains("greeting"),
            "settings reach the plugin: {st:?}"
        );
        let reply = sup
            .send(CallPlugin {
                plugin: "hello".into(),
                request: Request::Prepare(Box::new(domain("demo")).into()),
            })
            .await
            .unwrap();
        assert!(matches!(reply, Ok(Reply::Prepared(_))), "{reply:?}");
    });
}
