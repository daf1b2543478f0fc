//! The layout file: sections of records, each found by key through a sorted
//! index, and read in place from a memory map.
//!
//! ```text
//! [records][section keys and index]…[directory (JSON)][dir offset u64][dir length u64]["FRSERVE1"]
//! ```
//!
//! The directory gives each section's keys and index by offset, so records
//! may lie anywhere before it, in any order. Since 2026-12-03 the writer puts
//! every record first, as the builder makes them a part of the run's tables
//! at a time, then each section's keys and index; earlier files put each
//! section's keys and index after its records. Readers of either are the
//! same.
//!
//! A section's index is `count` entries of 24 bytes, sorted by key (bytes):
//! key offset (u32, into the section's key blob), key length (u32), record
//! offset (u64, in the file), record length (u64); all little-endian. Opening a
//! file checks the trailer, the directory and every entry's bounds (a few
//! milliseconds per million keys); it does not read the records.
//!
//! A *list* record (format 2) is `n` (u32), the length of its pre-serialised
//! default page (u32), `n` item spans (start u32, end u32, from the start of
//! the record's body), then the body: the default page, then the JSON of the
//! items not on it, one after another. The items on the default page are not
//! stored twice: their spans point into the page. Format 1 (runs stored
//! before 2026-12-03) stored `n + 1` item offsets and every item after the
//! page; it is still read, so a server keeps answering the run published
//! before an upgrade.

use std::io::{self, Write};
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Items on a default page (a list asked for with no `limit` or `offset`).
pub const DEFAULT_LIMIT: usize = 20;

/// The file's last eight bytes.
pub const MAGIC: &[u8; 8] = b"FRSERVE1";
/// The directory's `format`: bumped when the layout changes.
pub const FORMAT: u32 = 2;
/// The oldest format this version still reads.
const OLDEST_READ: u32 = 1;
const ENTRY: usize = 24;
const TRAILER: usize = 24;

/// Why a layout cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Reading or writing the file failed.
    #[error("serving layout: {0}")]
    Io(#[from] io::Error),
    /// The file is not a layout this version reads, or is damaged.
    #[error("serving layout is damaged: {0}")]
    Damaged(String),
    /// The run's tables could not be turned into a layout.
    #[error("building the serving layout: {0}")]
    Build(String),
}

fn damaged(what: impl Into<String>) -> LayoutError {
    LayoutError::Damaged(what.into())
}

/// The directory at the end of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Directory {
    /// [`FORMAT`].
    pub format: u32,
    /// The run the layout was built from.
    pub run_id: String,
    /// The sections, by name.
    pub sections: Vec<SectionDir>,
}

/// Where a section is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SectionDir {
    /// Its name.
    pub name: String,
    /// Keys.
    pub count: u64,
    /// Offset of the index.
    pub index_off: u64,
    /// Offset of the key blob.
    pub keys_off: u64,
    /// Length of the key blob.
    pub keys_len: u64,
}

/// Writes a layout. Records go into the file as they are added, in any
/// order and to any section; each section's keys and index are written at
/// [`LayoutWriter::finish`], sorted by key. So the builder can write the
/// records of one part of a run's tables at a time
/// ([`super::build`]), whatever order the parts hold their keys in.
pub struct LayoutWriter<W: Write> {
    out: W,
    pos: u64,
    sections: Vec<OpenSection>,
    current: Option<usize>,
}

struct OpenSection {
    name: String,
    keys: Vec<u8>,
    entries: Vec<Entry>,
}

/// A record written: its key (in the section's key blob) and where it lies.
struct Entry {
    key: Range<usize>,
    at: u64,
    len: u64,
}

impl<W: Write> LayoutWriter<W> {
    /// A writer onto `out`.
    pub fn new(out: W) -> Self {
        LayoutWriter {
            out,
            pos: 0,
            sections: Vec::new(),
            current: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Starts section `name`: the records added next go into it.
    pub fn begin(&mut self, name: &str) -> Result<(), LayoutError> {
        if self.sections.iter().any(|s| s.name == name) {
            return Err(damaged(format!("section {name} written twice")));
        }
        self.sections.push(OpenSection {
            name: name.to_string(),
            keys: Vec::new(),
            entries: Vec::new(),
        });
        self.current = Some(self.sections.len() - 1);
        Ok(())
    }

    /// Makes section `name` the one records are added to, starting it if it
    /// has not been.
    pub fn resume(&mut self, name: &str) -> Result<(), LayoutError> {
        match self.sections.iter().position(|s| s.name == name) {
            Some(i) => {
                self.current = Some(i);
                Ok(())
            }
            None => self.begin(name),
        }
    }

    /// Adds `record` under `key` to the current section.
    pub fn add(&mut self, key: &[u8], record: &[u8]) -> Result<(), LayoutError> {
        self.add_parts(key, &[record])
    }

    /// Adds the record made of `parts`, one after another, under `key` to the
    /// current section. A key added twice to a section is refused at
    /// [`LayoutWriter::finish`].
    pub fn add_parts(&mut self, key: &[u8], parts: &[&[u8]]) -> Result<(), LayoutError> {
        let at = self.pos;
        let Some(s) = self.current.map(|i| &mut self.sections[i]) else {
            return Err(damaged("a record written outside a section"));
        };
        let start = s.keys.len();
        s.keys.extend_from_slice(key);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        s.entries.push(Entry {
            key: start..s.keys.len(),
            at,
            len: len as u64,
        });
        for part in parts {
            self.write(part)?;
        }
        Ok(())
    }

    /// Writes section `s`'s keys, sorted, and its index.
    fn end(&mut self, mut s: OpenSection) -> Result<SectionDir, LayoutError> {
        let keys = std::mem::take(&mut s.keys);
        s.entries
            .sort_unstable_by(|a, b| keys[a.key.clone()].cmp(&keys[b.key.clone()]));
        if let Some(w) = s
            .entries
            .windows(2)
            .find(|w| keys[w[0].key.clone()] == keys[w[1].key.clone()])
        {
            return Err(damaged(format!(
                "section {}: key {:?} written twice",
                s.name,
                String::from_utf8_lossy(&keys[w[0].key.clone()])
            )));
        }
        let too_big = || damaged("key blob over 4 GiB");
        let mut sorted = Vec::with_capacity(keys.len());
        let mut index = Vec::with_capacity(s.entries.len() * ENTRY);
        for e in &s.entries {
            let key = &keys[e.key.clone()];
            index.extend_from_slice(
                &u32::try_from(sorted.len())
                    .map_err(|_| too_big())?
                    .to_le_bytes(),
            );
            index.extend_from_slice(
                &u32::try_from(key.len())
                    .map_err(|_| too_big())?
                    .to_le_bytes(),
            );
            index.extend_from_slice(&e.at.to_le_bytes());
            index.extend_from_slice(&e.len.to_le_bytes());
            sorted.extend_from_slice(key);
        }
        drop(keys);
        let keys_off = self.pos;
        self.write(&sorted)?;
        let index_off = self.pos;
        self.write(&index)?;
        Ok(SectionDir {
            name: s.name,
            count: s.entries.len() as u64,
            index_off,
            keys_off,
            keys_len: sorted.len() as u64,
        })
    }

    /// Writes every section's keys and index, the directory and the trailer,
    /// and returns the output.
    pub fn finish(mut self, run_id: &str) -> Result<W, LayoutError> {
        let mut sections = Vec::with_capacity(self.sections.len());
        for s in std::mem::take(&mut self.sections) {
            sections.push(self.end(s)?);
        }
        let dir = Directory {
            format: FORMAT,
            run_id: run_id.to_string(),
            sections,
        };
        let json = serde_json::to_vec(&dir).map_err(|e| damaged(e.to_string()))?;
        let dir_off = self.pos;
        self.write(&json)?;
        self.write(&dir_off.to_le_bytes())?;
        self.write(&(json.len() as u64).to_le_bytes())?;
        self.write(MAGIC)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Encodes a list record (see the module docs) whose body is `default_page`
/// then every item: none of the items is read from the page.
pub fn list_record(default_page: &[u8], items: &[Vec<u8>]) -> Result<Vec<u8>, LayoutError> {
    let mut spans = Vec::with_capacity(items.len());
    let mut body = default_page.to_vec();
    for item in items {
        let start = body.len();
        body.extend_from_slice(item);
        spans.push(start..body.len());
    }
    let mut out = list_header(default_page.len(), &spans)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The head of a list record (see the module docs) whose default page is
/// `default_page_len` bytes and whose items lie at `spans` of its body: the
/// record is the head then the body, which starts with the default page.
pub fn list_header(
    default_page_len: usize,
    spans: &[Range<usize>],
) -> Result<Vec<u8>, LayoutError> {
    let too_big = || damaged("a list over 4 GiB");
    let n = u32::try_from(spans.len()).map_err(|_| too_big())?;
    let mut out = Vec::with_capacity(8 + 8 * spans.len());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(default_page_len)
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    for span in spans {
        for at in [span.start, span.end] {
            out.extend_from_slice(&u32::try_from(at).map_err(|_| too_big())?.to_le_bytes());
        }
    }
    Ok(out)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// An opened layout: the file's bytes (a memory map) and its directory.
#[derive(Debug, Clone)]
pub struct Layout {
    bytes: Bytes,
    dir: Directory,
}

/// A section of an opened layout.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    bytes: &'a [u8],
    index: &'a [u8],
    keys: &'a [u8],
    count: usize,
}

impl Layout {
    /// Opens a layout held in `bytes`, checking its structure (not its records).
    pub fn open(bytes: Bytes) -> Result<Layout, LayoutError> {
        let b = &bytes[..];
        if b.len() < TRAILER || &b[b.len() - 8..] != MAGIC {
            return Err(damaged("no FRSERVE1 trailer (truncated, or not a layout)"));
        }
        let t = b.len() - TRAILER;
        let (dir_off, dir_len) = (u64_at(b, t), u64_at(b, t + 8));
        let dir_range = dir_off
            .zip(dir_len)
            .and_then(|(o, l)| {
                Some(usize::try_from(o).ok()?..usize::try_from(o.checked_add(l)?).ok()?)
            })
            .filter(|r| r.end <= t)
            .ok_or_else(|| damaged("the directory lies outside the file"))?;
        let dir: Directory = serde_json::from_slice(&b[dir_range.clone()])
            .map_err(|e| damaged(format!("the directory is unreadable: {e}")))?;
        if !(OLDEST_READ..=FORMAT).contains(&dir.format) {
            return Err(damaged(format!(
                "format {} (this version reads {OLDEST_READ} to {FORMAT})",
                dir.format
            )));
        }
        let layout = Layout { bytes, dir };
        for s in &layout.dir.sections {
            let section = layout.section_at(s, dir_range.start).ok_or_else(|| {
                damaged(format!("section {}'s index lies outside the file", s.name))
            })?;
            section
                .check(dir_range.start)
                .map_err(|e| damaged(format!("section {}: {e}", s.name)))?;
        }
        Ok(layout)
    }

    /// The run it was built from.
    pub fn run_id(&self) -> &str {
        &self.dir.run_id
    }

    /// The file's bytes (shared, not copied).
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The file's size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the file is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn section_at(&self, s: &SectionDir, end: usize) -> Option<Section<'_>> {
        let b = &self.bytes[..end];
        let count = usize::try_from(s.count).ok()?;
        let index_off = usize::try_from(s.index_off).ok()?;
        let keys_off = usize::try_from(s.keys_off).ok()?;
        let keys_len = usize::try_from(s.keys_len).ok()?;
        Some(Section {
            bytes: b,
            index: b.get(index_off..index_off.checked_add(count.checked_mul(ENTRY)?)?)?,
            keys: b.get(keys_off..keys_off.checked_add(keys_len)?)?,
            count,
        })
    }

    /// Section `name`; an absent section reads as empty.
    pub fn section(&self, name: &str) -> Section<'_> {
        self.dir
            .sections
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| self.section_at(s, self.bytes.len()))
            .unwrap_or(Section {
                bytes: &[],
                index: &[],
                keys: &[],
                count: 0,
            })
    }

    /// The record under `key` in section `name`, sharing the file's bytes.
    pub fn get(&self, name: &str, key: &[u8]) -> Option<Bytes> {
        let r = self.section(name).find(key)?;
        Some(self.bytes.slice(r))
    }

    /// The list under `key` in section `name`.
    pub fn list(&self, name: &str, key: &[u8]) -> Result<Option<List>, LayoutError> {
        match self.section(name).find(key) {
            None => Ok(None),
            Some(r) => List::new(self.bytes.slice(r), self.dir.format).map(Some),
        }
    }
}

impl<'a> Section<'a> {
    /// Keys in the section.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it has no keys.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn entry(&self, i: usize) -> Option<(Range<usize>, Range<usize>)> {
        let e = i * ENTRY;
        let ko = u32_at(self.index, e)? as usize;
        let kl = u32_at(self.index, e + 4)? as usize;
        let ro = usize::try_from(u64_at(self.index, e + 8)?).ok()?;
        let rl = usize::try_from(u64_at(self.index, e + 16)?).ok()?;
        Some((ko..ko.checked_add(kl)?, ro..ro.checked_add(rl)?))
    }

    /// The `i`-th key, in order.
    pub fn key(&self, i: usize) -> Option<&'a [u8]> {
        let (k, _) = self.entry(i)?;
        self.keys.get(k)
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.count).filter_map(|i| self.key(i))
    }

    fn check(&self, end: usize) -> Result<(), String> {
        let mut last: Option<&[u8]> = None;
        for i in 0..self.count {
            let (k, r) = self.entry(i).ok_or("an index entry overflows")?;
            let key = self.keys.get(k).ok_or("a key lies outside its blob")?;
            if r.end > end {
                return Err("a record lies outside the file".into());
            }
            if last.is_some_and(|l| l >= key) {
                return Err("keys out of order".into());
            }
            last = Some(key);
        }
        Ok(())
    }

    /// The byte range of the record under `key`.
    fn find(&self, key: &[u8]) -> Option<Range<usize>> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let (_, r) = self.entry(mid)?;
                    return self.bytes.get(r.clone()).map(|_| r);
                }
            }
        }
        None
    }
}

/// One list record, read in place.
#[derive(Debug, Clone)]
pub struct List {
    record: Bytes,
    n: usize,
    default: Range<usize>,
    /// Where the items' offsets are read from.
    spans: Spans,
}

/// How a list record locates its items.
#[derive(Debug, Clone, Copy)]
enum Spans {
    /// Format 1: `n + 1` offsets at byte 8, from `items_at`.
    Ends { items_at: usize },
    /// Format 2: `n` (start, end) pairs at byte 8, from `body_at`.
    Pairs { body_at: usize },
}

impl List {
    fn new(record: Bytes, format: u32) -> Result<List, LayoutError> {
        let bad = || damaged("a list record is malformed");
        let n = u32_at(&record, 0).ok_or_else(bad)? as usize;
        let default_len = u32_at(&record, 4).ok_or_else(bad)? as usize;
        let (head, pairs) = if format == 1 { (1, 4) } else { (0, 8) };
        let body_at = n
            .checked_add(head)
            .and_then(|k| k.checked_mul(pairs))
            .and_then(|k| k.checked_add(8))
            .filter(|&k| k <= record.len())
            .ok_or_else(bad)?;
        let default = body_at..body_at.checked_add(default_len).ok_or_else(bad)?;
        if default.end > record.len() {
            return Err(bad());
        }
        let spans = if format == 1 {
            let items_at = default.end;
            let items_len = u32_at(&record, body_at - 4).ok_or_else(bad)? as usize;
            if items_at
                .checked_add(items_len)
                .is_none_or(|e| e != record.len())
            {
                return Err(bad());
            }
            Spans::Ends { items_at }
        } else {
            Spans::Pairs { body_at }
        };
        let list = List {
            record,
            n,
            default,
            spans,
        };
        if (0..n).any(|i| list.span(i).is_none()) {
            return Err(bad());
        }
        Ok(list)
    }

    fn span(&self, i: usize) -> Option<Range<usize>> {
        let (from, a, b) = match self.spans {
            Spans::Ends { items_at } => (items_at, 8 + 4 * i, 12 + 4 * i),
            Spans::Pairs { body_at } => (body_at, 8 + 8 * i, 12 + 8 * i),
        };
        let a = from.checked_add(u32_at(&self.record, a)? as usize)?;
        let b = from.checked_add(u32_at(&self.record, b)? as usize)?;
        (a <= b && b <= self.record.len()).then_some(a..b)
    }

    /// Items in the list.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The JSON of item `i`.
    pub fn item(&self, i: usize) -> &[u8] {
        self.span(i).map_or(&[][..], |r| &self.record[r])
    }

    /// The pre-serialised default page (empty when the section has none),
    /// sharing the file's bytes.
    pub fn default_page(&self) -> Bytes {
        self.record.slice(self.default.clone())
    }

    /// Items `range` (clipped to the list) decoded, for the HTML pages.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        range: Range<usize>,
    ) -> Result<Vec<T>, LayoutError> {
        (range.start.min(self.n)..range.end.min(self.n))
            .map(|i| {
                serde_json::from_slice(self.item(i))
                    .map_err(|e| damaged(format!("an item does not decode: {e}")))
            })
            .collect()
    }
}

/// One page of a list, as every list endpoint answers it: `about`'s fields,
/// then `run_id`, `total`, `offset`, `limit` and the window's `items` (the
/// shape of serve's `Page`).
pub fn page_json<A: Serialize>(
    about: &A,
    run_id: &str,
    total: usize,
    offset: usize,
    limit: usize,
    items: impl Iterator<Item = impl AsRef<[u8]>>,
) -> Result<Vec<u8>, serde_json::Error> {
    page_json_with(about, run_id, total, offset, limit, items, |_| {})
}

/// [`page_json`], calling `placed` with where each item lies in the page.
pub fn page_json_with<A: Serialize>(
    about: &A,
    run_id: &str,
    total: usize,
    offset: usize,
    limit: usize,
    items: impl Iterator<Item = impl AsRef<[u8]>>,
    mut placed: impl FnMut(Range<usize>),
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = serde_json::to_vec(about)?;
    // An object: reopen it.
    if out.pop() != Some(b'}') {
        return Err(serde::ser::Error::custom("a page's about is not an object"));
    }
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"run_id\":");
    serde_json::to_writer(&mut out, run_id)?;
    write!(
        out,
        ",\"total\":{total},\"offset\":{offset},\"limit\":{limit},\"items\":["
    )
    .map_err(serde_json::Error::io)?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = out.len();
        out.extend_from_slice(item.as_ref());
        placed(start..out.len());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
