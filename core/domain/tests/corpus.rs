//! Round trips over the libvirt conformance corpus (`../shared/conformance`),
//! and a no-panic/no-hang property run over mutated inputs.
//!
//! The corpus lives outside the repository; when it is absent the tests say
//! so and pass without checking (CI always has it).

use std::path::PathBuf;

use qvisor_domain::{format, parse, FormatOptions, ParseOptions};

fn corpus_dir() -> Option<PathBuf> {
    let base = std::env::var("QVISOR_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    let cases = base.join("cases");
    if cases.is_dir() {
        Some(cases)
    } else {
        eprintln!(
            "conformance corpus not found at {}: skipped",
            cases.display()
        );
        None
    }
}

fn xml_files(suffix_filter: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&suffix_filter)
        })
        .collect();
    v.sort();
    v
}

/// Inputs whose model still changes on a round trip (see the test output).
const KNOWN_ROUND_TRIP_GAPS: usize = 47;
/// Expected outputs not yet reproduced byte-for-byte as trees.
const KNOWN_FIXED_POINT_GAPS: usize = 4;

const OPTS: ParseOptions = ParseOptions { inactive: true };

/// parse → format → parse gives an equal model for every corpus input that
/// parses (inputs of the errors corpus may be rejected by the parser).
#[test]
fn every_input_round_trips_to_an_equal_model() {
    let files = xml_files(|n| n.ends_with(".xml") && !n.contains(".x86_64-latest"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let Ok(a) = parse(&text, OPTS) else { continue };
        let out = format(&a, &FormatOptions::inactive_secure());
        checked += 1;
        match parse(&out, OPTS) {
            Ok(b) if a == b => {}
            _ => failures.push(f.display().to_string()),
        }
    }
    eprintln!(
        "round trip: {checked} inputs, {} differ: {failures:#?}",
        failures.len()
    );
    // known gaps (chardev multi-source, ...) are listed above; the floor
    // only goes down.
    assert!(failures.len() <= KNOWN_ROUND_TRIP_GAPS, "{failures:#?}");
}

/// libvirt's own expanded outputs are fixed points: format(parse(x)) == x
/// (compared as trees, like the checker: attribute order ignored).
#[test]
fn libvirt_outputs_are_fixed_points() {
    use qvisor_domain::xml::{parse_document, Element};
    fn norm(e: &Element) -> Element {
        let mut e = e.clone();
        e.attrs.sort();
        e.ns_decls.clear();
        e.prefix = None;
        e.text = e.trimmed_text().map(str::to_string);
        e.children = e.children.iter().map(norm).collect();
        e
    }
    let mut failures = Vec::new();
    for f in xml_files(|n| n.ends_with(".x86_64-latest.xml")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let def = parse(&text, OPTS).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let out = format(&def, &FormatOptions::inactive_secure());
        let a = norm(&parse_document(&text).unwrap());
        let b = norm(&parse_document(&out).unwrap());
        if a != b {
            failures.push(f.display().to_string());
        }
    }
    eprintln!("fixed points: {} differ: {failures:#?}", failures.len());
    assert!(failures.len() <= KNOWN_FIXED_POINT_GAPS, "{failures:#?}");
}

/// Deterministic xorshift generator for the property run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The parser never panics or hangs on mutated corpus inputs (byte flips,
/// truncations, splices). `QVISOR_FUZZ_ITERS` raises the count for a
/// longer run.
#[test]
fn parser_survives_mutated_inputs() {
    let iters: usize = std::env::var("QVISOR_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut seeds: Vec<Vec<u8>> = xml_files(|n| n.ends_with(".xml"))
        .iter()
        .take(80)
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    if seeds.is_empty() {
        seeds.push(b"<domain type='kvm'><name>a</name><os><type>hvm</type></os><devices><disk><target dev='vda'/></disk></devices></domain>".to_vec());
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let start = std::time::Instant::now();
    for _ in 0..iters {
        let mut s = seeds[(rng.next() as usize) % seeds.len()].clone();
        for _ in 0..(1 + rng.next() % 8) {
            if s.is_empty() {
                break;
            }
            let i = (rng.next() as usize) % s.len();
            match rng.next() % 4 {
                0 => s[i] = (rng.next() & 0xff) as u8,
                1 => s.truncate(i),
                2 => {
                    let j = (rng.next() as usize) % s.len();
                    let chunk: Vec<u8> = s[i.min(j)..i.max(j)].to_vec();
                    s.splice(i..i, chunk);
                }
                _ => {
                    s.remove(i);
                }
            }
        }
        let text = String::from_utf8_lossy(&s);
        if let Ok(d) = parse(&text, OPTS) {
            let _ = format(&d, &FormatOptions::inactive_secure());
        }
    }
    assert!(start.elapsed().as_secs() < 120, "fuzz run too slow (hang?)");
}
