//! The README's metrics table, the OpenMetrics text of a scrape, and the metric names a
//! dashboard or alert file refers to: what the observability tests compare.

use std::collections::{BTreeMap, BTreeSet};

/// One row of the README's metrics table.
#[derive(Debug, Clone)]
pub struct Row {
    /// As scraped: counters with their `_total`.
    pub name: String,
    pub kind: String,
    pub labels: BTreeSet<String>,
    /// Process kinds (`serve`, `ingress`, `worker`, `dispatcher`; `all` is every one).
    pub exported_by: BTreeSet<String>,
    /// When it is there at all (`AUTH__ENABLED`, `push enabled`…), if not always.
    pub condition: Option<String>,
}

impl Row {
    pub fn exported_by(&self, kind: &str) -> bool {
        self.exported_by.contains(kind)
    }
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The rows of the README's metrics table.
pub fn readme_rows() -> Vec<Row> {
    let readme = readme();
    let table = readme
        .split("| metric | type | labels | exported by | meaning |")
        .nth(1)
        .expect("the README has a metrics table");
    let mut rows = Vec::new();
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert!(cells.len() >= 5, "a metrics row with five cells: {line}");
        let list = |c: &str| -> BTreeSet<String> {
            c.split(',')
                .map(|l| l.trim().trim_matches('`').to_string())
                .filter(|l| !l.is_empty())
                .collect()
        };
        let (by, condition) = match cells[3].split_once('(') {
            Some((by, cond)) => (by, Some(cond.trim_end_matches(')').to_string())),
            None => (cells[3], None),
        };
        let mut exported_by = list(by);
        if exported_by.remove("all") {
            for k in ["serve", "ingress", "worker", "dispatcher"] {
                exported_by.insert(k.to_string());
            }
        }
        rows.push(Row {
            name: cells[0].trim_matches('`').to_string(),
            kind: cells[1].to_string(),
            labels: list(cells[2]),
            exported_by,
            condition,
        });
    }
    assert!(!rows.is_empty(), "the README's metrics table has rows");
    rows
}

/// One metric family of a scrape.
#[derive(Debug, Default, Clone)]
pub struct Family {
    pub kind: String,
    /// Label names of its samples (`le` left out).
    pub labels: BTreeSet<String>,
}

/// The families of an OpenMetrics text by their sample name (counters with `_total`).
pub fn scrape(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut families: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            let exported = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            out.entry(exported.clone()).or_default().kind = kind.to_string();
            families.push((name.to_string(), exported));
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((sample, labels)) = line.split_once('{') else {
            continue;
        };
        // The family whose name is the longest prefix of the sample's.
        let Some((_, exported)) = families
            .iter()
            .filter(|(name, _)| sample.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
        else {
            continue;
        };
        // Up to the last brace: a route template label has braces of its own.
        let labels = labels.rsplit_once('}').map_or("", |(l, _)| l);
        let fam = out.get_mut(exported).unwrap();
        for pair in labels.split("\",") {
            if let Some((k, _)) = pair.split_once('=') {
                let k = k.trim_matches([',', ' ']);
                if k != "le" && !k.is_empty() {
                    fam.labels.insert(k.to_string());
                }
            }
        }
    }
    out
}

/// Metric names (`bindu_…`, `http_…`) a dashboard or rule file refers to, as scraped
/// families name them (`_bucket`, `_sum` and `_count` of a histogram are its name).
pub fn referenced(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .filter(|t| t.starts_with("bindu_") || t.starts_with("http_"))
        .map(|t| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| t.strip_suffix(s))
                .unwrap_or(t)
                .to_string()
        })
        .collect()
}

/// The text of `deploy/<path>`.
pub fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Checks a scrape of process kind `kind` against the table: each of its families is a
/// row exported by `kind`, of the row's type and with no label the row does not name; each
/// row exported by `kind` is scraped unless it has a condition `met` does not name.
pub fn check_scrape(kind: &str, text: &str, met: &[&str]) -> BTreeMap<String, Family> {
    let rows = readme_rows();
    let scraped = scrape(text);
    for (name, fam) in &scraped {
        let row = rows.iter().find(|r| &r.name == name).unwrap_or_else(|| {
            panic!("{kind} exports {name}, which the README's metrics table lacks")
        });
        assert!(
            row.exported_by(kind),
            "{kind} exports {name}; the README says it is exported by {:?}",
            row.exported_by
        );
        assert_eq!(row.kind, fam.kind, "{name}'s type in the README");
        assert!(
            fam.labels.is_subset(&row.labels),
            "{name} has labels {:?}; the README lists {:?}",
            fam.labels,
            row.labels
        );
    }
    for row in rows.iter().filter(|r| r.exported_by(kind)) {
        let expected = match &row.condition {
            None => true,
            Some(c) => met.iter().any(|m| c.contains(m)),
        };
        if expected {
            assert!(
                scraped.contains_key(&row.name),
                "the README says {kind} exports {} ({:?}); it does not:\n{text}",
                row.name,
                row.condition
            );
        }
    }
    scraped
}
