//! Reading a tree of manifests the way `kubectl apply -f` would: files, directories (recursively,
//! `.yaml`, `.yml`, `.json`, in name order), `-` for standard input; multi-document YAML and
//! `kind: List`. Every object keeps where it came from (file, document, line), so that a
//! violation names the place to fix.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Error, Result};

/// Where an object was declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The path as given (or `-` for standard input).
    pub file: String,
    /// 1-based document number in the file.
    pub doc: usize,
    /// 1-based line of the document's first line.
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (document {})", self.file, self.line, self.doc)
    }
}

/// One parsed document (or one item of a `List`).
#[derive(Clone, Debug)]
pub struct Document {
    pub source: Source,
    pub value: Value,
}

/// A document that could not be read as an object, with the parser's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub source: Source,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub unreadable: Vec<Unreadable>,
}

/// Reads every path; `-` reads standard input (once). Missing paths are errors (nothing to
/// judge), unparsable documents are findings (the rest of the tree is still judged).
pub fn load(paths: &[PathBuf]) -> Result<Loaded> {
    let mut out = Loaded::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Read {
                    path: "-".into(),
                    source,
                })?;
            parse_into("-", &text, &mut out);
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let files = if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files)?;
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
                path: file.display().to_string(),
                source,
            })?;
            parse_into(&file.display().to_string(), &text, &mut out);
        }
    }
    Ok(out)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let read = |source| Error::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(read)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(p);
        }
    }
    Ok(())
}

/// Splits a stream into documents at `---` lines (a marker at column 0 is always a document
/// boundary: block scalars are indented) and parses each on its own, so that one bad document
/// does not hide the others and each keeps its line.
pub fn parse_into(file: &str, text: &str, out: &mut Loaded) {
    for (doc, (line, body)) in split(text).into_iter().enumerate() {
        // The object's first line, past leading comments: where a reader's eye should land.
        let Some(skip) = body.lines().position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        }) else {
            continue;
        };
        let source = Source {
            file: file.to_string(),
            doc: doc + 1,
            line: line + skip,
        };
        match serde_saphyr::from_str::<Value>(&body) {
            Ok(Value::Null) => {}
            Ok(v) => expand(source, v, out),
            Err(e) => out.unreadable.push(Unreadable {
                message: format!(
                    "malformed YAML: {}",
                    shift_lines(&e.to_string(), source.line - 1 - skip)
                ),
                source,
            }),
        }
    }
}

/// (first line, text) of each document.
fn split(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut body = String::new();
    for (i, l) in text.lines().enumerate() {
        let marker = l == "---" || l.starts_with("--- ") || l.starts_with("---\t") || l == "...";
        if marker {
            docs.push((start, std::mem::take(&mut body)));
            start = i + 2;
            // `--- {a: 1}`: content on the marker line belongs to the new document.
            if let Some(rest) = l.strip_prefix("--- ") {
                body.push_str(rest);
                body.push('\n');
                start = i + 1;
            }
        } else {
            if body.is_empty() {
                start = i + 1;
            }
            body.push_str(l);
            body.push('\n');
        }
    }
    docs.push((start, body));
    docs
}

/// The parser counts lines from the document's start; the reader wants the file's.
fn shift_lines(message: &str, by: usize) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) if digits > 0 => out.push_str(&(n + by).to_string()),
            _ => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn expand(source: Source, v: Value, out: &mut Loaded) {
    let is_list = v
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List")
        || v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List") && v.get("items").is_some());
    if is_list && let Some(items) = v.get("items").and_then(Value::as_array) {
        for item in items {
            expand(source.clone(), item.clone(), out);
        }
        return;
    }
    if !v.is_object() {
        out.unreadable.push(Unreadable {
            source,
            message: "not an object: a manifest is a mapping with apiVersion, kind and metadata"
                .into(),
        });
        return;
    }
    out.documents.push(Document { source, value: v });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded {
        let mut out = Loaded::default();
        parse_into("t.yaml", text, &mut out);
        out
    }

    #[test]
    fn documents_keep_their_file_line_and_number() {
        let l = parse(
            "# leading comment\n---\nkind: A\n---\n\n# only a comment\n---\nkind: B\nx: 1\n---\nkind: C\n",
        );
        let got: Vec<_> = l
            .documents
            .iter()
            .map(|d| {
                (
                    d.value["kind"].as_str().unwrap_or("").to_string(),
                    d.source.line,
                    d.source.doc,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("A".into(), 3, 2), ("B".into(), 8, 4), ("C".into(), 11, 5)]
        );
        assert!(l.unreadable.is_empty());
    }

    #[test]
    fn a_bad_document_is_reported_with_the_file_line_and_the_rest_is_read() {
        let l = parse("kind: A\n---\nkind: B\nmetadata: [unclosed\n---\nkind: C\n");
        assert_eq!(l.documents.len(), 2);
        assert_eq!(l.unreadable.len(), 1);
        let u = &l.unreadable[0];
        assert_eq!((u.source.line, u.source.doc), (3, 2));
        assert!(u.message.starts_with("malformed YAML"), "{}", u.message);
        assert!(
            !u.message.contains("line 1 ") && !u.message.contains("line 2 "),
            "line numbers are the file's: {}",
            u.message
        );
    }

    #[test]
    fn lists_expand_and_scalars_are_refused() {
        let l = parse("kind: List\nitems:\n- kind: A\n- kind: B\n---\njust a string\n");
        assert_eq!(l.documents.len(), 2);
        assert_eq!(l.unreadable.len(), 1);
        assert!(l.unreadable[0].message.contains("not an object"));
    }
}
