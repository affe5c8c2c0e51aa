//! A bound on how deeply a document nests flow collections (`[` and `{`), checked on its text
//! before the YAML parser sees it.
//!
//! libyaml (under serde_yaml_ng) does work proportional to the depth of open flow collections
//! for every token it scans, so 50,000 nested `[` on one line kept the control plane busy for
//! seconds. serde_yaml_ng's own limit of 128 levels applies only while deserializing, after the
//! parser has scanned the whole document: too late. So the depth is measured here first, by a
//! scanner that follows libyaml's tokenization (block indentation included) closely enough to
//! tell a `[` that opens a collection from one inside a quoted, plain or block scalar or a
//! comment. Deep block nesting costs the parser nothing extra; serde_yaml_ng refuses it past
//! 128 levels, with the same bound.

/// The deepest nesting of collections a document may have.
pub const MAX_NESTING: usize = 128;

/// Refuses a document whose flow collections nest deeper than [`MAX_NESTING`].
pub fn check(document: &str) -> Result<(), String> {
    // A document cannot nest deeper than it has opening brackets: most have far fewer.
    let openers = document
        .bytes()
        .filter(|b| matches!(b, b'[' | b'{'))
        .count();
    if openers <= MAX_NESTING {
        return Ok(());
    }
    match Scanner::new(document).line_beyond(MAX_NESTING) {
        Some(line) => Err(format!(
            "collections nest more than {MAX_NESTING} levels deep (line {line}); not parsed"
        )),
        None => Ok(()),
    }
}

/// Follows a document token by token, as libyaml's scanner does, counting open flow
/// collections.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// 1-based line of `pos`, and where that line starts.
    line: usize,
    line_start: usize,
    /// Columns of the open block collections (libyaml's indentation stack): a plain scalar
    /// continues on the next line, and a block scalar's content runs, only while lines are
    /// indented deeper than the innermost one.
    indents: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    /// Line and column of the last token that may turn out to be a key (a scalar or a flow
    /// collection in block context): a `:` after it on the same line opens a block mapping at
    /// its column.
    key: Option<(usize, usize)>,
}

impl<'a> Scanner<'a> {
    fn new(document: &'a str) -> Self {
        Self {
            text: document.as_bytes(),
            pos: 0,
            line: 1,
            line_start: 0,
            indents: Vec::new(),
            flow: 0,
            key: None,
        }
    }

    /// The line on which flow collections first nest deeper than `limit`, if they do.
    fn line_beyond(mut self, limit: usize) -> Option<usize> {
        loop {
            self.skip_to_token();
            let c = self.peek(0)?;
            let column = self.column();
            if self.flow == 0 {
                while self.indents.last().is_some_and(|&indent| indent > column) {
                    self.indents.pop();
                }
            }
            if column == 0 && self.at_document_marker() {
                // A document starts or ends: no block collection is open any more.
                self.indents.clear();
                self.key = None;
                self.advance(3);
                continue;
            }
            match c {
                b'[' | b'{' => {
                    self.note_key(column);
                    self.flow += 1;
                    if self.flow > limit {
                        return Some(self.line);
                    }
                    self.advance(1);
                }
                b']' | b'}' => {
                    self.flow = self.flow.saturating_sub(1);
                    self.advance(1);
                }
                b',' if self.flow > 0 => self.advance(1),
                // Indicators: a block entry, a complex key, a value.
                b'-' | b'?' | b':' if self.blankz(1) || (self.flow > 0 && c != b'-') => {
                    if c == b':' {
                        let line = self.line;
                        let key = self.key.take().filter(|&(at, _)| at == line);
                        self.roll(key.map_or(column, |(_, key_column)| key_column));
                    } else {
                        self.roll(column);
                    }
                    self.advance(1);
                }
                b'\'' | b'"' => {
                    self.note_key(column);
                    self.skip_quoted(c);
                }
                b'|' | b'>' if self.flow == 0 => self.skip_block_scalar(),
                b'!' | b'&' | b'*' => self.skip_property(),
                _ => {
                    self.note_key(column);
                    self.skip_plain();
                }
            }
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.text.get(self.pos + offset).copied()
    }

    /// Whether the byte at `offset` is a blank, a line break or the end.
    fn blankz(&self, offset: usize) -> bool {
        self.peek(offset)
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }

    /// Whether `---` or `...` (and then a blank or the end) is next.
    fn at_document_marker(&self) -> bool {
        let rest = &self.text[self.pos..];
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && self.blankz(3)
    }

    fn column(&self) -> usize {
        self.pos - self.line_start
    }

    fn advance(&mut self, count: usize) {
        let end = (self.pos + count).min(self.text.len());
        while self.pos < end {
            if self.text[self.pos] == b'\n' {
                self.line += 1;
                self.line_start = self.pos + 1;
            }
            self.pos += 1;
        }
    }

    /// Moves to the end of the line, before its line break.
    fn skip_line(&mut self) {
        while self.peek(0).is_some_and(|b| b != b'\n') {
            self.advance(1);
        }
    }

    /// Skips blanks, line breaks and comments up to the next token.
    fn skip_to_token(&mut self) {
        while let Some(b) = self.peek(0) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.advance(1),
                b'#' => self.skip_line(),
                _ => return,
            }
        }
    }

    fn note_key(&mut self, column: usize) {
        if self.flow == 0 {
            self.key = Some((self.line, column));
        }
    }

    /// A block collection starts at `column`, if deeper than the innermost one.
    fn roll(&mut self, column: usize) {
        if self.flow == 0 && self.indents.last().is_none_or(|&indent| indent < column) {
            self.indents.push(column);
        }
    }

    fn skip_quoted(&mut self, quote: u8) {
        self.advance(1);
        while let Some(b) = self.peek(0) {
            if b == quote {
                // In single quotes, '' is an escaped quote.
                if quote == b'\'' && self.peek(1) == Some(b'\'') {
                    self.advance(2);
                    continue;
                }
                self.advance(1);
                return;
            }
            let escaped = quote == b'"' && b == b'\\';
            self.advance(if escaped { 2 } else { 1 });
        }
    }

    /// A tag, anchor or alias: up to a blank or a flow indicator (`!<...>` up to its `>`).
    fn skip_property(&mut self) {
        if self.peek(0) == Some(b'!') && self.peek(1) == Some(b'<') {
            while self.peek(0).is_some_and(|b| b != b'>' && b != b'\n') {
                self.advance(1);
            }
            self.advance(1);
            return;
        }
        self.advance(1);
        while !self.blankz(0) && !matches!(self.peek(0), Some(b',' | b'[' | b']' | b'{' | b'}')) {
            self.advance(1);
        }
    }

    /// A plain scalar, which may go on over several lines.
    fn skip_plain(&mut self) {
        loop {
            while let Some(b) = self.peek(0) {
                let ends = match b {
                    b' ' | b'\t' | b'\r' | b'\n' => break,
                    b':' => {
                        self.blankz(1)
                            || (self.flow > 0
                                && matches!(
                                    self.peek(1),
                                    Some(b',' | b'?' | b'[' | b']' | b'{' | b'}')
                                ))
                    }
                    b',' | b'[' | b']' | b'{' | b'}' => self.flow > 0,
                    _ => false,
                };
                if ends {
                    return;
                }
                self.advance(1);
            }
            let line = self.line;
            while matches!(self.peek(0), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.advance(1);
            }
            match self.peek(0) {
                // A comment ends the scalar.
                None | Some(b'#') => return,
                _ if self.line == line => {}
                _ => {
                    // On a new line, the scalar goes on only if indented deeper than the
                    // innermost block collection (in flow context, always), and not at a
                    // document marker.
                    let column = self.column();
                    if self.flow == 0 && self.indents.last().is_some_and(|&i| column <= i) {
                        return;
                    }
                    if column == 0 && self.at_document_marker() {
                        return;
                    }
                }
            }
        }
    }

    /// A literal (`|`) or folded (`>`) block scalar: its header, then every line indented at
    /// least as much as its content (and blank lines).
    fn skip_block_scalar(&mut self) {
        let parent = self.indents.last().map_or(-1, |&indent| indent as isize);
        self.advance(1);
        let mut increment = None;
        for _ in 0..2 {
            match self.peek(0) {
                Some(b'+' | b'-') => self.advance(1),
                Some(digit @ b'1'..=b'9') => {
                    increment = Some(isize::from(digit - b'0'));
                    self.advance(1);
                }
                _ => break,
            }
        }
        self.skip_line();
        self.advance(1);
        let indent = match increment {
            Some(increment) if parent >= 0 => parent + increment,
            Some(increment) => increment,
            // Detected: the most indented of the leading blank lines and the first content
            // line, and deeper than the enclosing collection.
            None => {
                let (mut deepest, mut at) = (0, self.pos);
                loop {
                    let spaces = self.spaces_at(at);
                    deepest = deepest.max(spaces);
                    match self.text.get(at + spaces) {
                        Some(b'\n') => at += spaces + 1,
                        Some(b'\r') if self.text.get(at + spaces + 1) == Some(&b'\n') => {
                            at += spaces + 2;
                        }
                        _ => break,
                    }
                }
                (deepest as isize).max(parent + 1).max(1)
            }
        };
        while self.pos < self.text.len() {
            let spaces = self.spaces_at(self.pos);
            let blank = matches!(self.text.get(self.pos + spaces), None | Some(b'\r' | b'\n'));
            if !blank && (spaces as isize) < indent {
                return;
            }
            self.skip_line();
            self.advance(1);
        }
    }

    fn spaces_at(&self, at: usize) -> usize {
        self.text[at.min(self.text.len())..]
            .iter()
            .take_while(|&&b| b == b' ')
            .count()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn flow_collections_nest_up_to_the_limit() {
        assert_eq!(check(&nested(MAX_NESTING)), Ok(()));
        let refused = check(&format!("b: 1\n{}", nested(MAX_NESTING + 1))).unwrap_err();
        assert!(
            refused.contains("more than 128 levels deep (line 2)"),
            "{refused}"
        );
        let refused = check(&format!("a:\n  b: {}", "{x: ".repeat(200))).unwrap_err();
        assert!(refused.contains("(line 2)"), "{refused}");
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_count() {
        let many = "[{".repeat(200);
        let quoted = many.replace('[', "''[");
        let document = format!(
            "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: brackets # {many}
  annotations:
    single: '{many}'
    double: \"\\\"{many}\"
    plain: a{many}
    folded: >-
      {many}

      {many}
    flow: [\"{many}\", '{quoted}', {{c: d}}]
    after: |2
        {many}
data:
  continued: plain
    {many}
  literal: |
   {many}
  key: [{{x: y}}]
"
        );
        // Valid YAML, so the parser agrees these brackets are text.
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&document).unwrap();
        assert_eq!(check(&document), Ok(()));
    }

    #[test]
    fn collections_after_a_scalar_ends_count() {
        // Each of these scalars ends before the brackets, which open collections.
        let deep = "[".repeat(MAX_NESTING + 1);
        for document in [
            format!("a: |\n  text\nb: {deep}"),
            format!("- a: |\n    text\n  b: {deep}"),
            format!("a:\n  b: plain\n    more\n  c: {deep}"),
            format!("a: 'it''s'\nb: {deep}"),
            format!("a: \"\\\"\"\nb: {deep}"),
            format!("a: x # ]]]]\nb: {deep}"),
            format!("a: !tag {deep}"),
        ] {
            assert!(check(&document).is_err(), "{document}");
        }
    }

    /// Pieces of YAML, valid and not, from which the properties build documents.
    pub(crate) const PIECES: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        ":",
        "- ",
        "? ",
        "\n",
        "  ",
        "---\n",
        "# c\n",
        "'",
        "\"",
        "''",
        "\\\"",
        "|\n",
        ">-\n",
        "|2\n",
        "&a ",
        "*a",
        "!t ",
        "x",
        "[x]",
        "{k: v}",
        "kind: Ingress\n",
        "apiVersion: networking.k8s.io/v1\n",
        "kind: List\nitems:\n",
        "metadata: {name: n}\n",
        "a: ",
        "\t",
    ];

    fn yamlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..300).prop_map(|p| p.concat())
    }

    /// How deeply a parsed value nests collections: at least as deep as its flow collections.
    fn depth(value: &serde_yaml_ng::Value) -> usize {
        use serde_yaml_ng::Value;
        match value {
            Value::Sequence(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Mapping(map) => {
                1 + map
                    .iter()
                    .map(|(k, v)| depth(k).max(depth(v)))
                    .max()
                    .unwrap_or(0)
            }
            Value::Tagged(tagged) => depth(&tagged.value),
            _ => 0,
        }
    }

    /// Pieces of flow collections, including scalars that hold brackets. No `: `: a pair in a
    /// flow sequence, `[a: b]`, is a mapping without brackets, and so is a flow sequence that
    /// turns out to be a key, `[a]: b`.
    const FLOW_PIECES: &[&str] = &[
        "[", "]", "{", "}", ", ", ", ", "x", "y z", "'[{'", "\"]}\"", "'it''s'", "# [\n", "\n",
        " ", "&a ", "*a", "!t ", "a'b", "a\"b", "a:b",
    ];

    /// A flow sequence first: every collection in the document is a flow collection.
    fn flow_document() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(proptest::sample::select(FLOW_PIECES), 0..60),
            0..20usize,
        )
            .prop_map(|(pieces, closing)| format!("[{}{}", pieces.concat(), "]".repeat(closing)))
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The scanner never finds flow collections nested deeper than the parser does: it
        /// refuses no document the parser reads.
        #[test]
        fn prop_parsed_documents_nest_no_deeper_than_scanned(document in yamlish()) {
            if let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&document) {
                prop_assert_eq!(Scanner::new(&document).line_beyond(depth(&value)), None);
            }
        }

        /// In a document of flow collections only, the scanner finds every level the parser
        /// does: no nesting hides from it.
        #[test]
        fn prop_flow_collections_nest_no_deeper_than_scanned(document in flow_document()) {
            if let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&document) {
                prop_assert!(Scanner::new(&document).line_beyond(depth(&value) - 1).is_some());
            }
        }
    }
}
