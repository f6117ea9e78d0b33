//! CloudFront wildcard matching (`*` = any run of characters including none, `?` = exactly one),
//! used for signed-path patterns and a custom policy's `Resource`. Case-sensitive.

/// Whether `text` matches `pattern` as a whole. Iterative (no recursion) with single-star
/// backtracking, so hostile patterns cost at most O(len(pattern) × len(text)).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cloudfront_examples() {
        let yes = [
            ("*", ""),
            ("*", "/anything/at/all"),
            ("/private/*", "/private/a.txt"),
            ("/private/*", "/private/"),
            ("/images/*.jpg", "/images/a/b.jpg"),
            ("/a?c", "/abc"),
            ("http*://h/p/*", "https://h/p/x?y=1"),
            ("*.png", "/x.png"),
        ];
        for (p, t) in yes {
            assert!(wildcard_match(p, t), "{p} ~ {t}");
        }
        let no = [
            ("/private/*", "/private"),
            ("/private/*", "/Private/a"),
            ("/a?c", "/ac"),
            ("/a", "/ab"),
            ("/images/*.jpg", "/images/a.jpeg"),
            ("", "x"),
        ];
        for (p, t) in no {
            assert!(!wildcard_match(p, t), "{p} !~ {t}");
        }
    }

    /// Reference: obvious exponential recursion, only for short inputs.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((&c, rest)) => {
                !t.is_empty() && (c == '?' || c == t[0]) && reference(rest, &t[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(wildcard_match(&p, &t), reference(&pc, &tc));
        }

        #[test]
        fn literal_matches_itself(t in "[^*?]{0,40}") {
            prop_assert!(wildcard_match(&t, &t));
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let p = "*a".repeat(500) + "b";
        let t = "a".repeat(4000);
        let start = std::time::Instant::now();
        assert!(!wildcard_match(&p, &t));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}
