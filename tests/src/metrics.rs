//! Reading the edge's Prometheus text exposition.

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    samples: Vec<Sample>,
    pub text: String,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_sample)
            .collect();
        Metrics {
            samples,
            text: text.to_string(),
        }
    }

    /// Sum over every series of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Whether any series named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => {
            let sp = line.find(' ')?;
            (&line[..sp], &line[sp..])
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.find('{') {
        Some(open) => (
            &series[..open],
            parse_labels(&series[open + 1..series.len() - 1]),
        ),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_matches(|c: char| c == ',' || c.is_whitespace());
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let Some(end) = body.find('"') else {
            break;
        };
        out.push((key.to_string(), body[..end].to_string()));
        rest = &body[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_matching_labels() {
        let m = Metrics::parse(
            "# TYPE x counter\n\
             kubefront_edge_requests_total{cache=\"hit\",code=\"200\"} 3\n\
             kubefront_edge_requests_total{cache=\"miss\",code=\"200\"} 2\n\
             kubefront_edge_requests_total{cache=\"miss\",code=\"404\"} 1\n\
             kubefront_edge_cache_entries 7\n",
        );
        assert_eq!(m.sum("kubefront_edge_requests_total", &[]), 6.0);
        assert_eq!(
            m.sum("kubefront_edge_requests_total", &[("cache", "miss")]),
            3.0
        );
        assert_eq!(m.sum("kubefront_edge_cache_entries", &[]), 7.0);
        assert!(!m.has("nope"));
    }
}
