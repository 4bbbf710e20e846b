//! Golden test: the libvirt 9.0 argv corpus (`../shared/conformance`)
//! through this library in the harness environment ([`qvisor_cmdline::fake`]),
//! compared option by option with libvirt's expected command lines.
//!
//! Skipped (with a printed reason) when the corpus is not there. Cases with
//! per-case harness settings (`NAME.conformance.json`) are left to
//! `check.py`, which applies them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn corpus_dir() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = here.join("../../../shared/conformance");
    dir.join("argv.txt").exists().then_some(dir)
}

/// POSIX-shell tokenising of libvirt's native text (single quotes and
/// backslash-newline continuations are all it uses).
fn tokens(text: &str) -> Vec<String> {
    let text = text.replace("\\\n", " ");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_tok = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_tok = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '\\' => {
                in_tok = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_tok {
                    out.push(std::mem::take(&mut cur));
                    in_tok = false;
                }
            }
            c => {
                in_tok = true;
                cur.push(c);
            }
        }
    }
    if in_tok {
        out.push(cur);
    }
    out
}

/// Options grouped by name, in order; JSON arguments normalised.
fn group(toks: &[String]) -> (Vec<String>, String, BTreeMap<String, Vec<String>>) {
    let mut i = 0;
    let mut env = Vec::new();
    while i < toks.len() && toks[i].contains('=') && !toks[i].starts_with('-') {
        env.push(toks[i].clone());
        i += 1;
    }
    env.sort();
    let binary = toks.get(i).cloned().unwrap_or_default();
    i += 1;
    let mut opts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while i < toks.len() {
        let name = toks[i].clone();
        let mut arg = String::new();
        if i + 1 < toks.len() && !toks[i + 1].starts_with('-') {
            arg = toks[i + 1].clone();
            i += 1;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&arg) {
            if v.is_object() {
                arg = canonical(&v);
            }
        }
        opts.entry(name).or_default().push(arg);
        i += 1;
    }
    (env, binary, opts)
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn run_case(dir: &Path, name: &str) -> Result<String, String> {
    let xml = std::fs::read_to_string(dir.join(format!("cases/{name}.xml")))
        .map_err(|e| e.to_string())?;
    let mut def = qvisor_domain::parse(&xml, qvisor_domain::ParseOptions { inactive: true })
        .map_err(|e| e.to_string())?;
    let mut caps = qvisor_caps::QemuCaps::load_cache_file(dir.join("caps/caps_8.0.0.x86_64.xml"))
        .map_err(|e| e.to_string())?;
    caps.strip_machine_aliases();
    let conf =
        qvisor_conf::QemuConf::load(&dir.join("qemu.conf"), &qvisor_conf::Mode::System, true)
            .map_err(|e| e.to_string())?
            .conf;
    let emulator = def
        .devices
        .emulator
        .clone()
        .unwrap_or_else(|| caps.emulator.clone());
    if emulator != caps.emulator {
        caps = qvisor_caps::QemuCaps::new(emulator.as_str());
    }
    let mut random = |buf: &mut [u8]| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
    };
    let mut ectx = qvisor_domain::ExpandContext {
        caps: Some(&caps).filter(|c| !c.arch.is_empty()),
        default_emulator: "/usr/bin/qemu-system-x86_64".into(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        vnc_allow_host_audio: conf.vnc_allow_host_audio,
        nographics_allow_host_audio: conf.nographics_allow_host_audio,
        audio_env: None,
        sdl_audio_env: None,
        random: &mut random,
    };
    qvisor_domain::expand(&mut def, &mut ectx).map_err(|e| e.to_string())?;
    let aux = dir.join("aux");
    let mut host = qvisor_cmdline::fake::FakeHost::new(&aux);
    let mut env =
        qvisor_cmdline::fake::conformance_env(&def, &conf, &aux, &mut host, &BTreeMap::new());
    let cl = qvisor_cmdline::build(&def, &caps, &conf, &mut env).map_err(|e| e.to_string())?;
    Ok(cl.to_native())
}

#[test]
fn argv_corpus_matches_libvirt() {
    let Some(dir) = corpus_dir() else {
        println!("skipped: conformance corpus not found at ../shared/conformance");
        return;
    };
    let list = std::fs::read_to_string(dir.join("argv.txt")).expect("argv.txt");
    let (mut pass, mut fail, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for name in list.split_whitespace() {
        if dir.join(format!("cases/{name}.conformance.json")).exists() {
            skipped += 1;
            continue;
        }
        let expected =
            std::fs::read_to_string(dir.join(format!("cases/{name}.x86_64-latest.args")))
                .expect("expected args");
        let ok = match run_case(&dir, name) {
            Ok(out) => group(&tokens(&out)) == group(&tokens(&expected)),
            Err(_) => false,
        };
        if ok {
            pass += 1;
        } else {
            fail += 1;
            failures.push(name.to_string());
        }
    }
    println!("argv corpus: {pass} passed, {fail} failed, {skipped} with per-case settings skipped");
    println!("failing: {}", failures.join(" "));
    // The floor only rises; check.py reports the exact figure.
    assert!(pass >= 180, "argv corpus regressed: {pass} passed");
}

#[test]
fn tokenizer_handles_libvirt_quoting() {
    let t = tokens("A=1 \\\n/bin/q \\\n-object '{\"a\":\"it'\\''s\"}' \\\n-S\n");
    assert_eq!(
        t,
        vec!["A=1", "/bin/q", "-object", "{\"a\":\"it's\"}", "-S"]
    );
}
