//! The bytes of an import file, as the CSV reader needs them: a `.zip` with
//! one CSV opened, the encoding detected (or declared) and decoded to UTF-8,
//! the delimiter detected (or declared), and physical line numbers that are
//! right for LF, CRLF and CR files.
//!
//! Nothing here knows what the columns mean; that is `preset` and `import`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Text encodings people's exports come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Utf8,
    /// UTF-8 with a byte-order mark (Excel's "CSV UTF-8").
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    /// Excel's "CSV" on Western-European Windows; every byte is a character.
    Windows1252,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::Utf8Bom => "UTF-8 with BOM",
            Self::Utf16Le => "UTF-16LE with BOM",
            Self::Utf16Be => "UTF-16BE with BOM",
            Self::Windows1252 => "Windows-1252",
        }
    }

    /// `--encoding`: utf-8, utf-16le, utf-16be, windows-1252 (and the usual aliases).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Self::Utf8),
            "utf-16le" | "utf16le" | "utf-16" => Ok(Self::Utf16Le),
            "utf-16be" | "utf16be" => Ok(Self::Utf16Be),
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" => {
                Ok(Self::Windows1252)
            }
            other => Err(format!(
                "unknown encoding {other:?}: use utf-8, utf-16le, utf-16be or windows-1252"
            )),
        }
    }
}

/// `--delimiter`: comma, semicolon, tab, or the character itself.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\t" | "\\t" | "tab" => Ok(b'\t'),
        "|" | "pipe" => Ok(b'|'),
        other => Err(format!(
            "unknown delimiter {other:?}: use comma, semicolon, tab or pipe"
        )),
    }
}

pub fn delimiter_name(d: u8) -> &'static str {
    match d {
        b',' => "comma",
        b';' => "semicolon",
        b'\t' => "tab",
        b'|' => "pipe",
        _ => "other",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Zip { path: String, message: String },
}

/// What was found about a file, shown in the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sniffed {
    pub encoding: Encoding,
    pub encoding_detected: bool,
    pub delimiter: u8,
    pub delimiter_detected: bool,
    /// The CSV read from inside a `.zip`.
    pub zip_entry: Option<String>,
}

/// The decoded text of a file.
pub type Text = BufReader<Box<dyn Read + Send>>;

/// The CSV reader over a file's decoded text.
pub type CsvReader = csv::Reader<Tracked<Text>>;

/// An import file, opened as many times as the import needs to read it.
#[derive(Clone)]
pub struct Source {
    name: String,
    data: Data,
    pub sniffed: Sniffed,
}

#[derive(Clone)]
enum Data {
    File(PathBuf),
    /// A zip entry's bytes, or bytes a test or caller handed over.
    Memory(Arc<Vec<u8>>),
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

impl Source {
    /// Opens `path`: a CSV file, or a `.zip` holding exactly one.
    pub fn open(
        path: &Path,
        encoding: Option<Encoding>,
        delimiter: Option<u8>,
    ) -> Result<Self, SourceError> {
        let name = path.display().to_string();
        let read_err = |source| SourceError::Read {
            path: name.clone(),
            source,
        };
        let mut head = [0u8; 4];
        let n = {
            let mut f = std::fs::File::open(path).map_err(read_err)?;
            read_up_to(&mut f, &mut head).map_err(read_err)?
        };
        if &head[..n] == ZIP_MAGIC {
            let (entry, bytes) = unzip_one(path, &name)?;
            let mut s = Self::from_bytes(&name, bytes, encoding, delimiter)?;
            s.sniffed.zip_entry = Some(entry);
            return Ok(s);
        }
        let data = Data::File(path.to_path_buf());
        let detected = match encoding {
            Some(e) => e,
            None => detect_encoding(&mut open_data(&data, &name)?).map_err(read_err)?,
        };
        Self::finish(name, data, encoding, detected, delimiter)
    }

    /// A source over bytes already in memory (tests, zip entries).
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        encoding: Option<Encoding>,
        delimiter: Option<u8>,
    ) -> Result<Self, SourceError> {
        let data = Data::Memory(Arc::new(bytes));
        let detected = match encoding {
            Some(e) => e,
            None => detect_encoding(&mut open_data(&data, name)?).map_err(|source| {
                SourceError::Read {
                    path: name.to_string(),
                    source,
                }
            })?,
        };
        Self::finish(name.to_string(), data, encoding, detected, delimiter)
    }

    fn finish(
        name: String,
        data: Data,
        declared: Option<Encoding>,
        encoding: Encoding,
        delimiter: Option<u8>,
    ) -> Result<Self, SourceError> {
        let mut s = Self {
            name,
            data,
            sniffed: Sniffed {
                encoding,
                encoding_detected: declared.is_none(),
                delimiter: delimiter.unwrap_or(b','),
                delimiter_detected: delimiter.is_none(),
                zip_entry: None,
            },
        };
        if delimiter.is_none() {
            let mut r = s.text()?;
            let head = r.fill_buf().map_err(|source| SourceError::Read {
                path: s.name.clone(),
                source,
            })?;
            s.sniffed.delimiter = detect_delimiter(head);
        }
        Ok(s)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Total bytes of the stored data (for a progress bar).
    pub fn len_hint(&self) -> Option<u64> {
        match &self.data {
            Data::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Data::Memory(b) => Some(b.len() as u64),
        }
    }

    /// The file decoded to UTF-8, without a byte-order mark.
    pub fn text(&self) -> Result<Text, SourceError> {
        let raw = open_data(&self.data, &self.name)?;
        let decoded: Box<dyn Read + Send> = match self.sniffed.encoding {
            Encoding::Utf8 | Encoding::Utf8Bom => Box::new(SkipBom::new(raw, b"\xEF\xBB\xBF")),
            Encoding::Utf16Le => Box::new(Decode::new(raw, encoding_rs::UTF_16LE)),
            Encoding::Utf16Be => Box::new(Decode::new(raw, encoding_rs::UTF_16BE)),
            Encoding::Windows1252 => Box::new(Decode::new(raw, encoding_rs::WINDOWS_1252)),
        };
        Ok(BufReader::with_capacity(64 * 1024, decoded))
    }

    /// A CSV reader over the decoded text, its lines tracked.
    pub fn csv(&self) -> Result<CsvReader, SourceError> {
        Ok(csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .delimiter(self.sniffed.delimiter)
            .from_reader(Tracked::new(self.text()?)))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn open_data(data: &Data, name: &str) -> Result<Box<dyn Read + Send>, SourceError> {
    Ok(match data {
        Data::File(p) => Box::new(std::fs::File::open(p).map_err(|source| SourceError::Read {
            path: name.to_string(),
            source,
        })?),
        Data::Memory(b) => Box::new(Cursor::new(ArcBytes(b.clone()))),
    })
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The one CSV (or text) file in a zip. Mailchimp's audience export is a zip
/// of up to three CSVs (subscribed, unsubscribed, cleaned): each is imported
/// on its own, so that the summary of each says what it did.
fn unzip_one(path: &Path, name: &str) -> Result<(String, Vec<u8>), SourceError> {
    let zip_err = |message: String| SourceError::Zip {
        path: name.to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| SourceError::Read {
        path: name.to_string(),
        source,
    })?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| zip_err(format!("not a readable zip: {e}")))?;
    let entries: Vec<String> = archive
        .file_names()
        .filter(|n| !n.ends_with('/') && !n.starts_with("__MACOSX/"))
        .map(str::to_string)
        .collect();
    let csvs: Vec<&String> = entries
        .iter()
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l.ends_with(".csv") || l.ends_with(".txt") || l.ends_with(".tsv")
        })
        .collect();
    let entry = match csvs.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(zip_err(format!(
                "the zip holds no .csv file (found: {})",
                if entries.is_empty() {
                    "nothing".to_string()
                } else {
                    entries.join(", ")
                }
            )));
        }
        many => {
            return Err(zip_err(format!(
                "the zip holds {} CSV files ({}): unzip it and import each one, \
                 the unsubscribed and cleaned exports too, so that nobody who left is mailed",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut f = archive
        .by_name(&entry)
        .map_err(|e| zip_err(format!("cannot open {entry} in the zip: {e}")))?;
    let mut bytes = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0).min(1 << 30));
    f.read_to_end(&mut bytes)
        .map_err(|e| zip_err(format!("cannot read {entry} in the zip: {e}")))?;
    Ok((entry, bytes))
}

/// A byte-order mark decides; without one, the whole file is checked: valid
/// UTF-8 throughout is UTF-8, anything else is Windows-1252 (the encoding
/// Excel writes "CSV" in on Western-European Windows). Checking only the
/// start would misread a file whose first accented name is on row 50,000.
fn detect_encoding(r: &mut impl Read) -> std::io::Result<Encoding> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = read_up_to(r, &mut buf)?;
    let head = &buf[..n];
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Ok(Encoding::Utf8Bom);
    }
    if head.starts_with(b"\xFF\xFE") {
        return Ok(Encoding::Utf16Le);
    }
    if head.starts_with(b"\xFE\xFF") {
        return Ok(Encoding::Utf16Be);
    }
    // Streaming UTF-8 check: an incomplete sequence at a chunk's end is
    // carried into the next chunk.
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = head.to_vec();
    loop {
        let mut data = std::mem::take(&mut carry);
        data.extend_from_slice(&chunk);
        match std::str::from_utf8(&data) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => carry = data[e.valid_up_to()..].to_vec(),
            Err(_) => return Ok(Encoding::Windows1252),
        }
        let k = read_up_to(r, &mut buf)?;
        if k == 0 {
            break;
        }
        chunk = buf[..k].to_vec();
    }
    Ok(if carry.is_empty() {
        Encoding::Utf8
    } else {
        Encoding::Windows1252
    })
}

/// The delimiter of the header line: the most frequent of comma, semicolon
/// and tab outside quotes (ties go to the comma).
fn detect_delimiter(head: &[u8]) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                for c in counts.iter_mut() {
                    if c.0 == b {
                        c.1 += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let mut best = counts[0];
    for c in counts {
        if c.1 > best.1 {
            best = c;
        }
    }
    best.0
}

/// Drops a leading byte-order mark.
struct SkipBom<R> {
    inner: R,
    bom: &'static [u8],
    checked: bool,
    pending: Vec<u8>,
}

impl<R: Read> SkipBom<R> {
    fn new(inner: R, bom: &'static [u8]) -> Self {
        Self {
            inner,
            bom,
            checked: false,
            pending: Vec::new(),
        }
    }
}

impl<R: Read> Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.checked {
            self.checked = true;
            let mut head = vec![0u8; self.bom.len()];
            let n = read_up_to(&mut self.inner, &mut head)?;
            head.truncate(n);
            if head != self.bom {
                self.pending = head;
            }
        }
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Streams another encoding into UTF-8 with encoding_rs (which also drops
/// the encoding's byte-order mark). Malformed input becomes U+FFFD.
struct Decode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    done: bool,
}

impl<R: Read> Decode<R> {
    fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; 32 * 1024],
            output: Vec::with_capacity(96 * 1024 + 16),
            out_pos: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.out_pos == self.output.len() {
            if self.done {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.input)?;
            let last = n == 0;
            self.output.clear();
            self.out_pos = 0;
            let need = self.decoder.max_utf8_buffer_length(n).unwrap_or(n * 3 + 16);
            self.output.resize(need, 0);
            let (_, _, written, _) =
                self.decoder
                    .decode_to_utf8(&self.input[..n], &mut self.output, last);
            self.output.truncate(written);
            if last {
                self.done = true;
            }
        }
        let n = (self.output.len() - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.output[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// A reader that remembers where lines start and keeps the bytes the CSV
/// reader has not been told to forget, so a record's raw text and its
/// physical line can be looked up after the CSV reader parsed it.
///
/// A line ends at LF, CRLF or a lone CR (old Mac exports), as csv-core ends
/// records at all three; counting `\n` alone is wrong for CR files.
pub struct Tracked<R> {
    inner: R,
    /// Bytes from offset `base` on.
    window: VecDeque<u8>,
    base: u64,
    /// Offsets of line starts at or after `lines_base_offset`; `lines_before`
    /// lines start before the first of them.
    starts: VecDeque<u64>,
    lines_before: u64,
    /// Offset of the byte after the last one read.
    end: u64,
    last_was_cr: bool,
}

impl<R> Tracked<R> {
    fn new(inner: R) -> Self {
        let mut starts = VecDeque::new();
        starts.push_back(0);
        Self {
            inner,
            window: VecDeque::new(),
            base: 0,
            starts,
            lines_before: 0,
            end: 0,
            last_was_cr: false,
        }
    }

    /// 1-based physical line of the byte at `offset`.
    pub fn line_of(&self, offset: u64) -> u64 {
        let i = self.starts.partition_point(|&s| s <= offset);
        self.lines_before + i as u64
    }

    /// Where a record really starts: csv-core skips empty lines before a
    /// record, and reports the record at the first of them.
    pub fn record_start(&self, start: u64, end: u64) -> u64 {
        let s = start.saturating_sub(self.base) as usize;
        let e = (end.saturating_sub(self.base) as usize).min(self.window.len());
        let blank = self
            .window
            .range(s.min(e)..e)
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        start + blank as u64
    }

    /// The bytes from `start` to `end` (clamped to what is still held).
    pub fn raw(&self, start: u64, end: u64) -> Vec<u8> {
        let s = start.saturating_sub(self.base) as usize;
        let e = (end.saturating_sub(self.base) as usize).min(self.window.len());
        if s >= e {
            return Vec::new();
        }
        self.window.range(s..e).copied().collect()
    }

    /// Forgets the bytes and line starts before `offset` (keeping the start
    /// of the line that holds it, so `line_of` stays right).
    pub fn release(&mut self, offset: u64) {
        let drop = offset.saturating_sub(self.base) as usize;
        let drop = drop.min(self.window.len());
        self.window.drain(..drop);
        self.base += drop as u64;
        while self.starts.len() > 1 && self.starts[1] <= offset {
            self.starts.pop_front();
            self.lines_before += 1;
        }
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let bytes = &buf[..n];
        if n > 0 {
            if self.last_was_cr && bytes[0] != b'\n' {
                // A lone CR at the end of the last read ended its line.
                self.starts.push_back(self.end);
            }
            for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
                let at = self.end + i as u64;
                match bytes[i] {
                    b'\n' => self.starts.push_back(at + 1),
                    // CRLF ends at its LF; a lone CR ends here. A CR that
                    // ends the buffer is decided by the next read.
                    _ => match bytes.get(i + 1) {
                        Some(b'\n') => {}
                        Some(_) => self.starts.push_back(at + 1),
                        None => {}
                    },
                }
            }
            self.last_was_cr = bytes[n - 1] == b'\r';
        }
        self.window.extend(&buf[..n]);
        self.end += n as u64;
        Ok(n)
    }
}

/// Counts line terminators (LF, CRLF, lone CR) in `raw`, ignoring one at the very end.
pub fn inner_line_breaks(raw: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                ends.push(i + 2);
                i += 2;
                continue;
            }
            b'\r' | b'\n' => ends.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    if ends.last() == Some(&raw.len()) {
        ends.pop();
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &[u8]) -> Vec<(u64, Vec<String>)> {
        let src = Source::from_bytes("t.csv", text.to_vec(), None, None).unwrap();
        let mut rdr = src.csv().unwrap();
        let _ = rdr.byte_headers().unwrap();
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while rdr.read_byte_record(&mut rec).unwrap() {
            let start = rec.position().unwrap().byte();
            let end = rdr.position().byte();
            let start = rdr.get_ref().record_start(start, end);
            let line = rdr.get_ref().line_of(start);
            out.push((
                line,
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            ));
        }
        out
    }

    #[test]
    fn line_numbers_are_right_for_lf_crlf_and_cr() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = format!("email{eol}a@x.com{eol}{eol}b@x.com{eol}\"c\nd\"{eol}e@x.com{eol}");
            let got: Vec<u64> = lines_of(text.as_bytes()).iter().map(|r| r.0).collect();
            assert_eq!(got, vec![2, 4, 5, 7], "{eol:?}");
        }
    }

    #[test]
    fn encodings_are_detected_and_decoded() {
        let cases: Vec<(Vec<u8>, Encoding)> = vec![
            (b"email,name\nz@x.com,Zo\xc3\xab\n".to_vec(), Encoding::Utf8),
            (
                b"\xEF\xBB\xBFemail,name\nz@x.com,Zo\xc3\xab\n".to_vec(),
                Encoding::Utf8Bom,
            ),
            (
                b"email,name\nz@x.com,Zo\xeb\n".to_vec(),
                Encoding::Windows1252,
            ),
            (
                {
                    let mut v = vec![0xFF, 0xFE];
                    for u in "email,name\nz@x.com,Zoë\n".encode_utf16() {
                        v.extend(u.to_le_bytes());
                    }
                    v
                },
                Encoding::Utf16Le,
            ),
        ];
        for (bytes, enc) in cases {
            let src = Source::from_bytes("t.csv", bytes, None, None).unwrap();
            assert_eq!(src.sniffed.encoding, enc);
            let rows = lines_of_src(&src);
            assert_eq!(
                rows,
                vec![vec!["z@x.com".to_string(), "Zoë".to_string()]],
                "{enc:?}"
            );
        }
    }

    fn lines_of_src(src: &Source) -> Vec<Vec<String>> {
        let mut rdr = src.csv().unwrap();
        assert_eq!(rdr.headers().unwrap().iter().next(), Some("email"));
        rdr.records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn delimiters_are_detected() {
        assert_eq!(detect_delimiter(b"EMAIL;FIRSTNAME;\"A,B\"\n"), b';');
        assert_eq!(detect_delimiter(b"email\tname\n"), b'\t');
        assert_eq!(detect_delimiter(b"email,name;x\n"), b',');
        assert_eq!(detect_delimiter(b"email\n"), b',');
    }

    #[test]
    fn windows_1252_is_detected_past_the_first_chunk() {
        let mut text = b"email,name\n".to_vec();
        for i in 0..20_000 {
            text.extend(format!("u{i}@x.com,Ana\n").as_bytes());
        }
        text.extend(b"late@x.com,Mar\xeda\n");
        let src = Source::from_bytes("t.csv", text, None, None).unwrap();
        assert_eq!(src.sniffed.encoding, Encoding::Windows1252);
    }
}
