//! A bound on YAML nesting checked before the YAML parser runs: libyaml
//! scans a whole document before serde_yaml's recursion limit (128) can
//! refuse it, and that scan is quadratic in the nesting (a 200 KB file of
//! `[[[[…` took 58 s to refuse). This pass is linear and refuses at once.

/// Deepest nesting accepted; serde_yaml refuses anything deeper anyway.
pub const MAX_DEPTH: usize = 128;

/// The 1-based line where `text` first nests deeper than [`MAX_DEPTH`].
///
/// Counts flow collections (`[`, `{` where a node may start, outside quotes
/// and comments) plus block levels (indentation and `- ` entries). It may
/// overcount a little, never undercount what a parser would nest.
pub fn too_deep(text: &str) -> Option<usize> {
    let mut flow = 0usize;
    let mut block: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let indent = b.iter().take_while(|c| **c == b' ').count();
        let rest = &b[indent..];
        if flow == 0 && !rest.is_empty() && rest[0] != b'#' {
            while block.last().is_some_and(|&c| c > indent) {
                block.pop();
            }
            if block.last() != Some(&indent) {
                block.push(indent);
            }
            // `- - - x` opens a sequence per dash on one line.
            let mut col = indent;
            while b.get(col) == Some(&b'-') && matches!(b.get(col + 1), Some(b' ') | None) {
                col += 2;
                block.push(col);
            }
        }
        let mut quote: Option<u8> = None;
        let mut node_start = true;
        let mut i = indent;
        while i < b.len() {
            let c = b[i];
            match quote {
                Some(b'"') if c == b'\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    b'#' if i == 0 || b[i - 1] == b' ' => break,
                    b'"' | b'\'' if node_start => quote = Some(c),
                    b'[' | b'{' if node_start => flow += 1,
                    b']' | b'}' if flow > 0 => flow -= 1,
                    _ => {}
                },
            }
            if quote.is_none() && c != b' ' {
                node_start = matches!(c, b'[' | b'{' | b',' | b'-' | b':' | b'?');
            }
            if flow + block.len() > MAX_DEPTH {
                return Some(n + 1);
            }
            i += 1;
        }
        if flow + block.len() > MAX_DEPTH {
            return Some(n + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_are_found_at_once() {
        let flow = format!(
            "receivers: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(too_deep(&flow), Some(1));
        let dashes = format!("a:\n  {}x\n", "- ".repeat(200));
        assert_eq!(too_deep(&dashes), Some(2));
        let mut indented = String::new();
        for i in 0..200 {
            indented.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(too_deep(&indented), Some(MAX_DEPTH + 1));
    }

    #[test]
    fn ordinary_configs_pass() {
        for f in ["../config.yaml", "../examples/llm-gateway.yaml"] {
            let text = std::fs::read_to_string(f).unwrap();
            assert_eq!(too_deep(&text), None, "{f}");
        }
        let tricky = "a: \"[[[[\"\nb: '{{{{'\nc: x[y\n# [[[[[[\nd: [1, [2, {e: 3}]]\n";
        assert_eq!(too_deep(tricky), None);
    }
}
