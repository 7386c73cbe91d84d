//! Data loss prevention: finds personal data and secrets in text before it leaves for an external
//! model, and redacts them with typed placeholders that are put back in the answer.
//!
//! Every detector is a regular expression for the shape plus a check in code, because the shape
//! alone matches far too much: order numbers, invoice ids, dates, versions and prices are digits
//! too. Where the value carries a checksum (IBAN mod-97, card Luhn, DNI/NIE letter, CIF control,
//! SSN ranges) a candidate that fails it is not a finding, so redaction does not blank out the
//! very numbers a question about an invoice needs. The `regex` crate has no lookaround, so the
//! boundary rules ("not glued to more digits", "not after `v`") are checked in code too, and a
//! rejected candidate is retried one character later so it cannot hide a real value behind it.
//!
//! Decisions worth knowing:
//! - E-mail addresses need a dotted domain with a letters-only top-level label: `root@localhost`
//!   or `user@intranet` name a machine account more often than a person, and matching every
//!   `word@word` would catch handles and code.
//! - A bare run of 9 digits starting with 6, 7, 8 or 9 reads as a Spanish phone number, since
//!   that is how many people type one; other bare digit runs are never phones. Separated numbers
//!   must follow one of the usual groupings with one kind of separator, and a number next to a
//!   currency sign or code is a price, not a phone.
//! - US numbers follow the NANP rules (area and exchange codes start with 2–9) and need
//!   separators; with a `+` they are E.164, where `+1` and `+34` must have exactly 11 digits and
//!   other countries 8 to 15.
//! - IPv4 addresses preceded by `v` or by a word such as "version" or "release" (or followed by
//!   `.digit`) are versions. IPv6 addresses must be `::`-compressed or have all 8 groups and contain a digit,
//!   which leaves out times (`12:30:45`), MAC addresses and `Type::method` paths.
//! - A PEM private key whose END line is missing (a passage cut mid-key) is redacted to the end of
//!   the text: a partial key is still a secret.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// What a provider may receive (`dlp` in a provider's config). The default is `redact`: a provider
/// is external until someone says it is not, and an on-premises model is marked `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Values are replaced by typed placeholders, and put back in the answer.
    #[default]
    Redact,
    /// A prompt holding any value is not sent: the next provider is tried, and without one the
    /// answer is extracted from the passages.
    Block,
    /// Sent as it is.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redact => "redact",
            Mode::Block => "block",
            Mode::Off => "off",
        }
    }
}

/// Values per kind in `texts`, counted as a [`Redactor`] would (the same value twice is one).
pub fn counts<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeMap<Kind, usize> {
    let mut redactor = Redactor::new();
    for text in texts {
        redactor.redact(text);
    }
    redactor.counts()
}

/// What a finding is. The order is the order of counts in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    Iban,
    Card,
    /// Spanish national id of a person (DNI) or of a foreign resident (NIE).
    DniNie,
    /// Spanish tax id of a company (NIF, formerly CIF).
    NifCif,
    /// US social security number.
    Ssn,
    Ip,
    /// API keys, tokens and private keys.
    Secret,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 9] = [
        Kind::Email,
        Kind::Phone,
        Kind::Iban,
        Kind::Card,
        Kind::DniNie,
        Kind::NifCif,
        Kind::Ssn,
        Kind::Ip,
        Kind::Secret,
    ];

    /// The stable name used in usage events, the audit log and the labelled corpus (the same as
    /// the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Iban => "iban",
            Kind::Card => "card",
            Kind::DniNie => "dni_nie",
            Kind::NifCif => "nif_cif",
            Kind::Ssn => "ssn",
            Kind::Ip => "ip",
            Kind::Secret => "secret",
        }
    }

    /// The tag in placeholders (`[EMAIL_1]`): short and upper case so a model keeps it intact.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Iban => "IBAN",
            Kind::Card => "CARD",
            Kind::DniNie => "DNI",
            Kind::NifCif => "NIF",
            Kind::Ssn => "SSN",
            Kind::Ip => "IP",
            Kind::Secret => "SECRET",
        }
    }

    /// Which of two overlapping findings of the same length wins: the one whose shape says more.
    /// Secrets and checksummed values beat phones, whose shape is the loosest.
    fn specificity(self) -> u8 {
        match self {
            Kind::Secret => 8,
            Kind::Iban => 7,
            Kind::Card => 6,
            Kind::Email => 5,
            Kind::DniNie | Kind::NifCif => 4,
            Kind::Ssn => 3,
            Kind::Ip => 2,
            Kind::Phone => 1,
        }
    }
}

/// One value found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// Byte offset of the first byte of the value.
    pub start: usize,
    /// Byte offset just past the value.
    pub end: usize,
}

/// Every value in `text`, sorted by start and never overlapping. When candidates overlap the
/// longer one wins (an IBAN whose digits look like a phone number is one IBAN), and between two
/// of the same length the more specific kind.
pub fn find(text: &str) -> Vec<Finding> {
    let mut candidates = Vec::new();
    emails(text, &mut candidates);
    phones(text, &mut candidates);
    ibans(text, &mut candidates);
    cards(text, &mut candidates);
    spanish_ids(text, &mut candidates);
    ssns(text, &mut candidates);
    ips(text, &mut candidates);
    secrets(text, &mut candidates);

    candidates.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(b.kind.specificity().cmp(&a.kind.specificity()))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if kept.iter().all(|k| candidate.end <= k.start || k.end <= candidate.start) {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// Redaction of one request: each value becomes a typed placeholder (`[EMAIL_1]`, `[PHONE_2]`…),
/// the same value gets the same placeholder in every text of the request (question, passages,
/// earlier turns), and [`Redactor::restore`] puts the values back where the model echoed a
/// placeholder. The mapping lives only in this value: drop it with the request and nothing of the
/// values remains. `Debug` shows the counts, never the values, so logging one leaks nothing.
#[derive(Default)]
pub struct Redactor {
    /// Value → its placeholder.
    placeholders: HashMap<String, String>,
    /// Placeholder → its value.
    values: HashMap<String, String>,
    /// Distinct values per kind; also numbers each kind's placeholders.
    counts: BTreeMap<Kind, usize>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// `text` with every finding replaced by its placeholder.
    pub fn redact(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for finding in find(text) {
            out.push_str(&text[copied..finding.start]);
            out.push_str(&self.placeholder(finding.kind, &text[finding.start..finding.end]));
            copied = finding.end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// `text` (a model's answer) with every placeholder this redactor handed out replaced by its
    /// value. A placeholder it never handed out (one the model made up, like `[EMAIL_9]`) is left
    /// as it is: there is no value to put back, and guessing one would show the wrong data.
    pub fn restore(&self, text: &str) -> String {
        static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| re(r"\[[A-Z]+_[0-9]+\]"));
        if self.values.is_empty() {
            return text.to_owned();
        }
        PLACEHOLDER
            .replace_all(text, |caps: &regex::Captures| {
                let placeholder = &caps[0];
                self.values.get(placeholder).cloned().unwrap_or_else(|| placeholder.to_owned())
            })
            .into_owned()
    }

    /// Distinct values per kind (kinds with none are absent): what usage events and the audit log
    /// record, since the values themselves must never be stored.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        self.counts.clone()
    }

    /// True when nothing has been redacted.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn placeholder(&mut self, kind: Kind, value: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(value) {
            return placeholder.clone();
        }
        let number = self.counts.entry(kind).or_insert(0);
        *number += 1;
        let placeholder = format!("[{}_{}]", kind.tag(), number);
        self.placeholders.insert(value.to_owned(), placeholder.clone());
        self.values.insert(placeholder.clone(), value.to_owned());
        placeholder
    }
}

impl Redactor {
    /// Restores a model's answer as it streams in: a chunk may end inside a placeholder
    /// (`…write to [EMA`), so text from an unclosed `[` is held back until the next chunk closes it
    /// or shows it cannot be a placeholder.
    pub fn into_stream_restorer(self) -> StreamRestorer {
        StreamRestorer { redactor: self, held: String::new() }
    }
}

/// See [`Redactor::into_stream_restorer`].
#[derive(Debug)]
pub struct StreamRestorer {
    redactor: Redactor,
    held: String,
}

/// Longest placeholder worth waiting for: `[SECRET_` and a number of up to 6 digits, closed.
const LONGEST_PLACEHOLDER: usize = 16;

impl StreamRestorer {
    /// The restored text that can be shown now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.held.push_str(chunk);
        let keep_from = match self.held.rfind('[') {
            Some(open) if may_become_placeholder(&self.held[open..]) => open,
            _ => self.held.len(),
        };
        let ready: String = self.held.drain(..keep_from).collect();
        self.redactor.restore(&ready)
    }

    /// What was held back, restored where it can be: call when the stream ends.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.redactor.restore(&rest)
    }
}

/// Whether `text`, starting at `[`, is the start of a placeholder not yet closed.
fn may_become_placeholder(text: &str) -> bool {
    if text.len() > LONGEST_PLACEHOLDER || text.contains(']') {
        return false;
    }
    let mut seen_underscore = false;
    for c in text[1..].chars() {
        match c {
            'A'..='Z' if !seen_underscore => {}
            '_' if !seen_underscore => seen_underscore = true,
            '0'..='9' if seen_underscore => {}
            _ => return false,
        }
    }
    true
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("counts", &self.counts).finish_non_exhaustive()
    }
}

/// Compiles one of this module's fixed patterns; a typo in one is a bug caught by every test.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid DLP pattern {pattern}: {e}"))
}

/// Runs `pattern` over `text` and keeps what `accept` turns into a value range. A rejected match
/// is retried from its next character, so a candidate that fails its check cannot hide a real
/// value that starts inside it.
fn scan(
    pattern: &Regex,
    text: &str,
    kind: Kind,
    out: &mut Vec<Finding>,
    accept: impl Fn(usize, usize) -> Option<(usize, usize)>,
) {
    let mut at = 0;
    while at <= text.len() {
        let Some(m) = pattern.find_at(text, at) else { break };
        let next_char = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
        match accept(m.start(), m.end()) {
            Some((start, end)) if end > start => {
                out.push(Finding { kind, start, end });
                at = end.max(next_char);
            }
            _ => at = next_char,
        }
    }
}

/// Characters that join a number to more of the same token (`INV-2024-000123`, `1.2.3.4.5`,
/// `12/03`, `1,5`), so that a value glued to them is only part of something longer.
const JOINERS: &[char] = &['-', '.', '/', ','];

/// True when `text[start..end]` stands alone: not glued to a letter, digit, `_` or `#` (an id), nor
/// joined by one of `joiners` to a further letter or digit.
fn standalone(text: &str, start: usize, end: usize, joiners: &[char]) -> bool {
    !glued(text[..start].chars().rev(), joiners) && !glued(text[end..].chars(), joiners)
}

fn glued(mut chars: impl Iterator<Item = char>, joiners: &[char]) -> bool {
    match chars.next() {
        None => false,
        Some(c) if c.is_alphanumeric() || c == '_' || c == '#' => true,
        Some(c) if joiners.contains(&c) => chars.next().is_some_and(char::is_alphanumeric),
        Some(_) => false,
    }
}

/// The longest prefix of `text[start..end]`, cut only before a separator, that stands alone and
/// passes `valid`. Greedy patterns for grouped numbers can take one group too many ("card 4111 1111
/// 1111 1111 2025"), and the value is then the candidate less its last groups.
fn longest_valid(
    text: &str,
    start: usize,
    end: usize,
    joiners: &[char],
    valid: impl Fn(&str) -> bool,
) -> Option<(usize, usize)> {
    let cuts = text[start..end]
        .char_indices()
        .filter(|&(i, c)| i > 0 && matches!(c, ' ' | '-' | '.'))
        .map(|(i, _)| start + i)
        .chain(std::iter::once(end));
    let mut cuts: Vec<usize> = cuts.collect();
    cuts.reverse();
    cuts.into_iter()
        .find(|&cut| standalone(text, start, cut, joiners) && valid(&text[start..cut]))
        .map(|cut| (start, cut))
}

fn digits(value: &str) -> Vec<u32> {
    value.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The lengths of the digit groups of `value` and whether one kind of separator parts them all.
fn groups(value: &str) -> (Vec<usize>, bool) {
    let mut lengths = Vec::new();
    let mut separator = None;
    let mut consistent = true;
    let mut run = 0;
    for c in value.chars() {
        if c.is_ascii_digit() {
            run += 1;
            continue;
        }
        if run > 0 {
            lengths.push(run);
            run = 0;
        }
        match separator {
            None => separator = Some(c),
            Some(s) if s != c => consistent = false,
            Some(_) => {}
        }
    }
    if run > 0 {
        lengths.push(run);
    }
    (lengths, consistent)
}

fn emails(text: &str, out: &mut Vec<Finding>) {
    static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
        re(r"[\w%+-](?:[\w.%+-]*[\w%+-])?@(?:[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+\p{L}{2,63}\b")
    });
    scan(&EMAIL, text, Kind::Email, out, |start, end| Some((start, end)));
}

fn phones(text: &str, out: &mut Vec<Finding>) {
    static INTERNATIONAL: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?:\+|\b00)[1-9][0-9]{0,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,7}"));
    static SPANISH: LazyLock<Regex> = LazyLock::new(|| re(r"[6789][0-9]{1,2}(?:[ .-]?[0-9]{2,3}){2,3}"));
    static US: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?:\b1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"));

    // A digit group just before, parted only by spaces, makes the "phone" the tail of a longer
    // number (`DE89 3704 0044 0532 0130 0` holds a `0044…`): the value is that number, not a phone.
    let plausible = |start: usize, end: usize| {
        !next_to_currency(text, start, end)
            && !text[..start].trim_end_matches(' ').ends_with(|c: char| c.is_ascii_digit())
    };
    scan(&INTERNATIONAL, text, Kind::Phone, out, |start, end| {
        longest_valid(text, start, end, JOINERS, international_phone).filter(|&(s, e)| plausible(s, e))
    });
    scan(&SPANISH, text, Kind::Phone, out, |start, end| {
        longest_valid(text, start, end, JOINERS, spanish_phone).filter(|&(s, e)| plausible(s, e))
    });
    scan(&US, text, Kind::Phone, out, |start, end| {
        longest_valid(text, start, end, JOINERS, us_phone).filter(|&(s, e)| plausible(s, e))
    });
}

/// `+` or `00`, a country code and the subscriber number, 8 to 15 digits in all (E.164), with
/// the lengths of the two plans most seen here pinned down so a trailing number is not taken in.
fn international_phone(value: &str) -> bool {
    let all = digits(value);
    let number = if value.starts_with("00") { &all[2..] } else { &all[..] };
    let national = |code: &[u32]| number.starts_with(code);
    if national(&[1]) {
        return number.len() == 11 && us_digits(&number[1..]);
    }
    if national(&[3, 4]) {
        return number.len() == 11 && matches!(number[2], 6..=9);
    }
    (8..=15).contains(&number.len())
}

/// 9 digits starting with 6–9, bare or grouped 3-3-3, 3-2-2-2 or 2-3-2-2 with one separator.
fn spanish_phone(value: &str) -> bool {
    let (lengths, consistent) = groups(value);
    consistent && matches!(lengths.as_slice(), [9] | [3, 3, 3] | [3, 2, 2, 2] | [2, 3, 2, 2])
}

fn us_phone(value: &str) -> bool {
    let all = digits(value);
    let number = if all.len() == 11 && all[0] == 1 { &all[1..] } else { &all[..] };
    number.len() == 10 && us_digits(number)
}

/// NANP: neither the area code nor the exchange starts with 0 or 1.
fn us_digits(number: &[u32]) -> bool {
    number.len() == 10 && number[0] >= 2 && number[3] >= 2
}

/// True when a currency sign or code sits right before or after the value (`$612 345 678`,
/// `699.000.000 €`): then it is an amount.
fn next_to_currency(text: &str, start: usize, end: usize) -> bool {
    const SIGNS: &[char] = &['€', '$', '£', '¥'];
    const CODES: &[&str] = &["EUR", "USD", "GBP", "euros", "dólares", "dollars"];
    let before = text[..start].trim_end();
    let after = text[end..].trim_start();
    before.ends_with(SIGNS)
        || after.starts_with(SIGNS)
        || CODES.iter().any(|code| before.ends_with(code) || after.starts_with(code))
}

/// Lengths of the IBAN of each country that has one (SWIFT registry); others must be 15–34.
const IBAN_LENGTHS: &str = "\
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20 EG29 \
    ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IS26 IT27 JO30 KW30 KZ20 \
    LB28 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 \
    RO24 RS22 SA24 SE24 SI19 SK24 SM27 TN24 TR26 UA29 VG24 XK20";

fn ibans(text: &str, out: &mut Vec<Finding>) {
    static IBAN: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"));
    scan(&IBAN, text, Kind::Iban, out, |start, end| longest_valid(text, start, end, &[], valid_iban));
}

/// ISO 13616: the length fits the country and the number, with its first four characters moved
/// to the end and letters read as 10–35, is 1 modulo 97.
fn valid_iban(value: &str) -> bool {
    let compact: Vec<char> = value.chars().filter(|c| *c != ' ').collect();
    let country: String = compact.iter().take(2).collect();
    let known = IBAN_LENGTHS.split_whitespace().find(|entry| entry.starts_with(&country));
    let fits = match known.and_then(|entry| entry[2..].parse::<usize>().ok()) {
        Some(length) => compact.len() == length,
        None => (15..=34).contains(&compact.len()),
    };
    if !fits {
        return false;
    }
    let mut remainder = 0u32;
    for c in compact[4..].iter().chain(&compact[..4]) {
        let Some(value) = c.to_digit(36) else { return false };
        remainder = if value < 10 { (remainder * 10 + value) % 97 } else { (remainder * 100 + value) % 97 };
    }
    remainder == 1
}

fn cards(text: &str, out: &mut Vec<Finding>) {
    static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9](?:[ -]?[0-9]){12,18}"));
    scan(&CARD, text, Kind::Card, out, |start, end| longest_valid(text, start, end, JOINERS, valid_card));
}

/// 13–19 digits in groups of at least 3 with one kind of separator, a known issuer prefix (Visa,
/// Mastercard, Amex, Discover) and a valid Luhn check digit.
fn valid_card(value: &str) -> bool {
    let all = digits(value);
    let (lengths, consistent) = groups(value);
    if !(13..=19).contains(&all.len()) || !consistent || lengths.iter().any(|&l| l < 3) {
        return false;
    }
    let prefix = |n: usize| all[..n].iter().fold(0, |acc, d| acc * 10 + d);
    // The issuers' number ranges (Visa; Mastercard; Mir; American Express; Diners; JCB; Maestro,
    // Discover and UnionPay, which share the 6s; Maestro's 50 and 56–58; UnionPay's 81): a Luhn
    // check alone passes one random number in ten.
    let issuer = all[0] == 4
        || all[0] == 6
        || (50..=58).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || (2200..=2204).contains(&prefix(4))
        || matches!(prefix(2), 34 | 37 | 36 | 38 | 39 | 81)
        || (300..=305).contains(&prefix(3))
        || (3528..=3589).contains(&prefix(4));
    issuer && luhn(&all)
}

fn luhn(all: &[u32]) -> bool {
    let sum: u32 = all
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

fn spanish_ids(text: &str, out: &mut Vec<Finding>) {
    static DNI: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b[0-9]{2}\.?[0-9]{3}\.?[0-9]{3}[ -]?[A-Za-z]\b|\b[XYZxyz][ -]?[0-9]{7}[ -]?[A-Za-z]\b"));
    static CIF: LazyLock<Regex> = LazyLock::new(|| re(r"\b[ABCDEFGHJNPQRSUVW][ -]?[0-9]{7}[ -]?[0-9A-J]\b"));
    scan(&DNI, text, Kind::DniNie, out, |start, end| {
        (standalone(text, start, end, JOINERS) && valid_dni_nie(&text[start..end])).then_some((start, end))
    });
    scan(&CIF, text, Kind::NifCif, out, |start, end| {
        (standalone(text, start, end, JOINERS) && valid_cif(&text[start..end])).then_some((start, end))
    });
}

/// DNI: 8 digits and the letter `TRWAGMYFPDXBNJZSQVHLCKE[n % 23]` (dots as thousands separators
/// only as `12.345.678`). NIE: X, Y or Z read as 0, 1 or 2, then the same check.
fn valid_dni_nie(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    let dots = upper.matches('.').count();
    if dots != 0 && dots != 2 {
        return false;
    }
    let Some(letter) = upper.chars().last() else { return false };
    let lead = match upper.chars().next() {
        Some('X') => 0,
        Some('Y') => 1,
        Some('Z') => 2,
        _ => 0,
    };
    let number = digits(&upper[..upper.len() - 1]).iter().fold(lead, |acc, d| acc * 10 + d);
    char::from(DNI_LETTERS[(number % 23) as usize]) == letter
}

/// The CIF control: add the digits in even places, add the digit sums of twice those in odd
/// places; the control is `(10 - sum % 10) % 10`, written as that digit or as `JABCDEFGHI[it]`.
/// Companies of types P, Q, R, S, N and W (and non-residents, `00…`) always use the letter; types
/// A, B, E and H always the digit.
fn valid_cif(value: &str) -> bool {
    let chars: Vec<char> = value.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let [kind, body @ .., control] = chars.as_slice() else { return false };
    let body = digits(&body.iter().collect::<String>());
    if body.len() != 7 {
        return false;
    }
    let sum: u32 =
        body.iter().enumerate().map(|(i, &d)| if i % 2 == 1 { d } else { (d * 2) / 10 + (d * 2) % 10 }).sum();
    let check = (10 - sum % 10) % 10;
    let as_letter = char::from(b"JABCDEFGHI"[check as usize]);
    let as_digit = char::from_digit(check, 10);
    let letter_only = matches!(kind, 'P' | 'Q' | 'R' | 'S' | 'N' | 'W') || body[..2] == [0, 0];
    let digit_only = matches!(kind, 'A' | 'B' | 'E' | 'H');
    (Some(*control) == as_digit && !letter_only) || (*control == as_letter && !digit_only)
}

fn ssns(text: &str, out: &mut Vec<Finding>) {
    static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"));
    scan(&SSN, text, Kind::Ssn, out, |start, end| {
        (standalone(text, start, end, JOINERS) && valid_ssn(&text[start..end])).then_some((start, end))
    });
}

/// Area not 000, 666 or 900–999; group not 00; serial not 0000 (never issued).
fn valid_ssn(value: &str) -> bool {
    let mut parts = value.split('-').map(|p| p.parse::<u32>().unwrap_or(0));
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else { return false };
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn ips(text: &str, out: &mut Vec<Finding>) {
    static V4: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"));
    static V6: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)[0-9a-f]{0,4}:[0-9a-f:.]*[0-9a-f:]"));
    // Only `.` joins: `10.0.0.1:8080`, `10.0.0.0/8` and `10.0.0.1,10.0.0.2` are addresses.
    scan(&V4, text, Kind::Ip, out, |start, end| {
        let octets_fit = text[start..end].split('.').all(|o| o.parse::<u8>().is_ok());
        (octets_fit && standalone(text, start, end, &['.']) && !after_version_word(text, start)).then_some((start, end))
    });
    scan(&V6, text, Kind::Ip, out, |start, end| {
        let value = &text[start..end];
        let colons = value.matches(':').count();
        let shaped = value.contains("::") || colons == 7 || (colons == 6 && value.contains('.'));
        let parses = value.parse::<Ipv6Addr>().is_ok();
        let bounded = !glued(text[..start].chars().rev(), &[':']) && !glued(text[end..].chars(), &['.', ':']);
        (shaped && parses && value.contains(|c: char| c.is_ascii_digit()) && bounded).then_some((start, end))
    });
}

/// True when the word just before `start` says a version follows ("version 1.2.3.4",
/// "release-1.2.3.4").
fn after_version_word(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches([' ', '-', '_']);
    let word = before.rsplit(|c: char| !c.is_alphabetic()).next().unwrap_or_default();
    matches!(word.to_lowercase().as_str(), "version" | "versión" | "versao" | "ver" | "release" | "build" | "firmware")
}

fn secrets(text: &str, out: &mut Vec<Finding>) {
    static TOKENS: LazyLock<Regex> = LazyLock::new(|| {
        re(concat!(
            r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}",
            r"|\bgh[pousr]_[A-Za-z0-9]{30,}",
            r"|\bgithub_pat_[A-Za-z0-9_]{30,}",
            r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"|\bxox[abpr]-[A-Za-z0-9-]{10,}",
            r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
            r"|\blore_[A-Za-z0-9_-]{43}",
        ))
    });
    static PEM_BEGIN: LazyLock<Regex> =
        LazyLock::new(|| re(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"));

    scan(&TOKENS, text, Kind::Secret, out, |start, end| {
        let value = &text[start..end];
        let key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        // A `sk-` key has letters and digits mixed; a hyphenated phrase such as
        // `sk-learn-compatible-estimators` has no digit.
        let plausible = !value.starts_with("sk-") || value[3..].contains(|c: char| c.is_ascii_digit());
        let whole = !text[end..].starts_with(key_char);
        (plausible && whole).then_some((start, end))
    });
    for caps in PEM_BEGIN.captures_iter(text) {
        let (Some(block), Some(label)) = (caps.get(0), caps.get(1)) else { continue };
        let end_line = format!("-----END {}-----", label.as_str());
        let end = text[block.end()..].find(&end_line).map_or(text.len(), |i| block.end() + i + end_line.len());
        out.push(Finding { kind: Kind::Secret, start: block.start(), end });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_answer_is_restored_across_chunk_boundaries() {
        let mut redactor = Redactor::new();
        redactor.redact("Mail ana@example.com or call 612 345 678.");
        let mut restorer = redactor.into_stream_restorer();
        let chunks = ["Write to [EMA", "IL_1] or [", "PHONE_1", "]. See [1", "] and [EMAIL_9] [x"];
        let shown: String = chunks.iter().map(|c| restorer.push(c)).collect::<String>() + &restorer.finish();
        assert_eq!(shown, "Write to ana@example.com or 612 345 678. See [1] and [EMAIL_9] [x");
        // Text that cannot become a placeholder is not held back.
        let mut restorer = Redactor::new().into_stream_restorer();
        assert_eq!(restorer.push("a [b"), "a [b");
        assert_eq!(restorer.push("see [1"), "see [1");
        assert_eq!(restorer.push(" or [PH"), " or ");
        assert_eq!(restorer.finish(), "[PH");
    }

    #[test]
    fn counts_are_distinct_values_per_kind() {
        let counts = counts(["ana@example.com, ana@example.com", "luis@example.com 612 345 678"]);
        assert_eq!(counts, BTreeMap::from([(Kind::Email, 2), (Kind::Phone, 1)]));
    }

    fn found(text: &str) -> Vec<(Kind, &str)> {
        find(text).into_iter().map(|f| (f.kind, &text[f.start..f.end])).collect()
    }

    #[test]
    fn checksums() {
        assert!(valid_iban("ES9121000418450200051332"));
        assert!(valid_iban("GB82 WEST 1234 5698 7654 32"));
        assert!(!valid_iban("ES9221000418450200051332"));
        assert!(luhn(&digits("4111111111111111")));
        assert!(!luhn(&digits("4111111111111112")));
        assert!(valid_dni_nie("12345678Z") && valid_dni_nie("X1234567L") && !valid_dni_nie("12345678A"));
        assert!(valid_cif("B12345674") && !valid_cif("B12345675"));
        assert!(valid_ssn("123-45-6789") && !valid_ssn("000-45-6789") && !valid_ssn("123-45-0000"));
    }

    #[test]
    fn the_longer_finding_wins() {
        let text = "IBAN ES91 2100 0418 4502 0005 1332, tel. 612 345 678";
        assert_eq!(found(text), [(Kind::Iban, "ES91 2100 0418 4502 0005 1332"), (Kind::Phone, "612 345 678")]);
        assert_eq!(found("+34 612 345 678"), [(Kind::Phone, "+34 612 345 678")]);
    }

    #[test]
    fn a_trailing_group_is_cut_off() {
        assert_eq!(found("card 4111 1111 1111 1111 2025"), [(Kind::Card, "4111 1111 1111 1111")]);
    }

    #[test]
    fn pem_blocks_are_one_finding_even_when_cut() {
        let text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nthanks";
        assert_eq!(found(text).len(), 1);
        assert!(found(text)[0].1.ends_with("-----END RSA PRIVATE KEY-----"));
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQ";
        assert_eq!(found(cut), [(Kind::Secret, cut)]);
    }

    #[test]
    fn debug_shows_no_values() {
        let mut redactor = Redactor::new();
        redactor.redact("write to ana@example.com");
        let debug = format!("{redactor:?}");
        assert!(!debug.contains("ana@") && debug.contains("Email"), "{debug}");
    }
}
