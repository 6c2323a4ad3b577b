//! Personal data: e-mail addresses, phone numbers, payment cards, IBANs, US SSNs, IPs.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use any_core::Span;
use regex::Regex;

use super::{Findings, from_findings, standalone};
use crate::redact::{RedactionMap, disjoint};
use crate::{Check, Guardrail, Policy, StreamScope, Subject};

/// A kind of personal data [`Pii`] finds; its label (`EMAIL`, ...) names the placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// A phone number: international (`+44 20 7946 0958`, `0044 ...`) or North American
    /// (`(415) 555-0132`).
    Phone,
    /// A payment card number of 13 to 19 digits that passes the Luhn check.
    CreditCard,
    /// An IBAN that passes the ISO 13616 mod-97 check, with or without spaces.
    Iban,
    /// A US social security number (`123-45-6789`) outside the never-issued ranges.
    Ssn,
    /// An IPv4 or IPv6 address.
    IpAddress,
}

impl PiiKind {
    /// Every kind.
    pub const ALL: [PiiKind; 6] = [
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::IpAddress,
    ];

    /// The span label and placeholder name: `EMAIL`, `PHONE`, `CREDIT_CARD`, `IBAN`, `SSN`,
    /// `IP_ADDRESS`.
    pub fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::CreditCard => "CREDIT_CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::Ssn => "SSN",
            PiiKind::IpAddress => "IP_ADDRESS",
        }
    }

    fn risk(self) -> f32 {
        match self {
            PiiKind::CreditCard | PiiKind::Iban | PiiKind::Ssn => 0.9,
            PiiKind::Email | PiiKind::Phone => 0.6,
            PiiKind::IpAddress => 0.3,
        }
    }
}

/// Finds personal data and redacts it readably (`Mail [EMAIL] or call [PHONE].`).
///
/// Numbers are validated, not just shaped: card numbers must pass Luhn, IBANs mod-97, SSNs
/// the issuing rules, IPs must parse; so order numbers and timestamps are left alone. An
/// IPv6 address needs three groups of digits, so `::1` and a slice such as `a[1::2]` are not
/// one.
///
/// Its [default policy](Guardrail::default_policy) is [`Policy::Redact`]: a guard given a
/// bare `Pii` lets a text that mentions an e-mail address through with `[EMAIL]` in its
/// place, rather than refusing an ordinary document. Give it with
/// [`Guards::block`](crate::Guards::block) to refuse such texts instead.
///
/// ```
/// use any_guard::{Guardrail, Pii, Subject};
/// let v = Pii::default().check_now(&Subject::text("Mail ada@example.com or call +44 20 7946 0958."));
/// assert!(!v.valid);
/// assert_eq!(v.redacted.as_deref(), Some("Mail [EMAIL] or call [PHONE]."));
/// ```
#[derive(Debug, Clone)]
pub struct Pii {
    kinds: Vec<PiiKind>,
}

impl Default for Pii {
    fn default() -> Self {
        Pii {
            kinds: PiiKind::ALL.to_vec(),
        }
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[a-z]{2,}\b").expect("valid")
});
/// An extension after a number: `x137`, ` ext. 12`.
const EXTENSION: &str = r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?";
static PHONE_INTL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?:\+|\b00)[1-9]\d{{0,2}}(?:[ .\-]?\(\d{{1,4}}\))?(?:[ .\-]?\d{{1,5}}){{1,6}}{EXTENSION}"
    ))
    .expect("valid")
});
static PHONE_NANP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?:\b1[ .\-])?(?:\(\d{{3}}\)[ .\-]?|\b\d{{3}}[ .\-])\d{{3}}[ .\-]\d{{4}}{EXTENSION}\b"
    ))
    .expect("valid")
});
/// A national number with its trunk prefix 0, in groups: `0141 496 0071`, `(02)-7667-9014`,
/// `03 39 94 95 18`, `(07548) 62461`. Ungrouped runs of digits are left alone: they are as
/// often order or account numbers.
/// Shapes the national phone pattern also fits but that are something else: a date
/// (`05.03.2021`, `05-03-2021`) or an SSN-shaped number (`000-12-3456`, never issued).
static NOT_PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{2}[.\-]\d{2}[.\-]\d{4}|\d{3}-\d{2}-\d{4})$").expect("valid")
});
static PHONE_NATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\(0\d{1,4}\)|\b0\d{1,4})(?:[ .\-]{1,2}\d{2,6}){1,4}\b").expect("valid")
});
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ \-]?\d){11,18}\b").expect("valid"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,9}\b").expect("valid"));
static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").expect("valid"));
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b").expect("valid"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\d{1,3}(?:\.\d{1,3}){3})?")
        .expect("valid")
});

/// Whether a digit string has the length and issuer prefix of a payment card: 13 to 19
/// digits from the major networks (2 to 6), 15-digit JCB numbers starting 1800 or 2131, and
/// Maestro numbers, which may be as short as 12 digits.
fn card_shaped(digits: &[u8]) -> bool {
    const MAESTRO: [&[u8]; 10] = [
        b"5018", b"5020", b"5038", b"5893", b"6304", b"6759", b"6761", b"6762", b"6763", b"0604",
    ];
    let len = digits.len();
    ((13..=19).contains(&len) && (b'2'..=b'6').contains(&digits[0]))
        || (len == 15 && (digits.starts_with(b"1800") || digits.starts_with(b"2131")))
        || ((12..=19).contains(&len) && MAESTRO.iter().any(|p| digits.starts_with(p)))
}

/// The Luhn checksum of a digit string.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d > 4 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 check: move the first four characters to the end, letters to numbers,
/// remainder mod 97 must be 1.
pub(crate) fn iban_valid(compact: &str) -> bool {
    if !(15..=34).contains(&compact.len()) || !compact.is_ascii() {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_valid(s: &str) -> bool {
    let (area, rest) = s.split_at(3);
    let (group, serial) = (&rest[1..3], &rest[4..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

impl Pii {
    /// Only these kinds.
    ///
    /// ```
    /// use any_guard::{Guardrail, Pii, PiiKind, Subject};
    /// let emails = Pii::only([PiiKind::Email]);
    /// assert!(emails.check_now(&Subject::text("call +1 415 555 0132")).valid);
    /// ```
    pub fn only(kinds: impl IntoIterator<Item = PiiKind>) -> Self {
        let mut kinds: Vec<PiiKind> = kinds.into_iter().collect();
        // Detectors run in a fixed order so the most specific wins an overlap.
        kinds.sort_by_key(|k| PiiKind::ALL.iter().position(|a| a == k));
        kinds.dedup();
        Pii { kinds }
    }

    /// The findings in `text`, in text order. Full-width digits and letters and invisible
    /// characters inside a value do not hide it; spans cover the original characters.
    pub fn scan(&self, text: &str) -> Vec<Span> {
        crate::normalize::scan_folded(text, |t| self.scan_plain(t))
    }

    fn scan_plain(&self, text: &str) -> Vec<Span> {
        let mut found = Findings::default();
        for &kind in &self.kinds {
            let label = kind.label();
            match kind {
                PiiKind::CreditCard => {
                    for m in CARD.find_iter(text) {
                        let digits: Vec<u8> =
                            m.as_str().bytes().filter(u8::is_ascii_digit).collect();
                        if card_shaped(&digits) && luhn(&digits) {
                            found.push(m.start(), m.end(), label);
                        }
                    }
                }
                PiiKind::Iban => {
                    for m in IBAN.find_iter(text) {
                        // The pattern may run into a following word: drop trailing groups
                        // until the checksum holds.
                        let mut candidate = m.as_str();
                        loop {
                            let compact: String = candidate.chars().filter(|c| *c != ' ').collect();
                            if iban_valid(&compact) {
                                found.push(m.start(), m.start() + candidate.len(), label);
                                break;
                            }
                            match candidate.rfind(' ') {
                                Some(i) if i > 4 => candidate = &candidate[..i],
                                _ => break,
                            }
                        }
                    }
                }
                PiiKind::Ssn => {
                    for m in SSN.find_iter(text) {
                        if ssn_valid(m.as_str()) && standalone(text, m.start(), m.end(), b"-") {
                            found.push(m.start(), m.end(), label);
                        }
                    }
                }
                PiiKind::Email => {
                    for m in EMAIL.find_iter(text) {
                        found.push(m.start(), m.end(), label);
                    }
                }
                PiiKind::Phone => {
                    let candidates = PHONE_INTL
                        .find_iter(text)
                        .chain(PHONE_NANP.find_iter(text))
                        .chain(PHONE_NATIONAL.find_iter(text));
                    for m in candidates {
                        // Digits of the number itself, without an extension.
                        let number = m.as_str().split(['x', 'e']).next().unwrap_or("");
                        let digits = number.bytes().filter(u8::is_ascii_digit).count();
                        if (7..=15).contains(&digits)
                            && !NOT_PHONE.is_match(m.as_str())
                            && standalone(text, m.start(), m.end(), b"")
                        {
                            found.push(m.start(), m.end(), label);
                        }
                    }
                }
                PiiKind::IpAddress => {
                    for m in IPV4.find_iter(text) {
                        if m.as_str().parse::<Ipv4Addr>().is_ok()
                            && standalone(text, m.start(), m.end(), b".")
                        {
                            found.push(m.start(), m.end(), label);
                        }
                    }
                    for m in IPV6.find_iter(text) {
                        let s = m.as_str();
                        // Three groups at least: `::1` (loopback) says nothing about anyone,
                        // and `1::2` is more often a slice in code than an address.
                        if s.split(':').filter(|g| !g.is_empty()).count() >= 3
                            && s.parse::<Ipv6Addr>().is_ok()
                            && standalone(text, m.start(), m.end(), b":")
                        {
                            found.push(m.start(), m.end(), label);
                        }
                    }
                }
            }
        }
        found.into_spans()
    }

    /// Redacts `text` with numbered placeholders (`[EMAIL_1]`) recorded in `map`, so the
    /// values can be restored later with [`RedactionMap::restore`].
    ///
    /// ```
    /// use any_guard::{Pii, RedactionMap};
    /// let mut map = RedactionMap::default();
    /// let text = Pii::default().redact_reversible("a@example.com, b@example.com, a@example.com", &mut map);
    /// assert_eq!(text, "[EMAIL_1], [EMAIL_2], [EMAIL_1]");
    /// assert_eq!(map.restore(&text), "a@example.com, b@example.com, a@example.com");
    /// ```
    pub fn redact_reversible(&self, text: &str, map: &mut RedactionMap) -> String {
        let spans = self.scan(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in disjoint(&spans) {
            out.push_str(&text[at..s.start]);
            out.push_str(&map.placeholder(&s.label, &text[s.start..s.end]));
            at = s.end;
        }
        out.push_str(&text[at..]);
        out
    }
}

impl Guardrail for Pii {
    fn name(&self) -> &str {
        "pii"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        let spans = self.scan(&text);
        let score = spans
            .iter()
            .filter_map(|s| PiiKind::ALL.iter().find(|k| k.label() == s.label))
            .map(|k| k.risk())
            .fold(0.0, f32::max);
        Check::ready(from_findings("pii", "pii", score, &text, spans, |s| {
            Cow::Owned(format!("[{}]", s.label))
        }))
    }

    fn default_policy(&self) -> Policy {
        Policy::Redact
    }

    fn stream_scope(&self) -> StreamScope {
        // The longest finding: an IBAN with spaces (42 bytes) or an e-mail address.
        StreamScope::Window(128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<(String, &str)> {
        Pii::default()
            .scan(text)
            .into_iter()
            .map(|s| (s.label.clone(), &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn short_ipv6_shapes_in_code_are_not_addresses() {
        for text in [
            "x = a[1::2] + b[::3]",
            "bind to ::1 only",
            "std::io::Result",
        ] {
            assert_eq!(labels(text), [], "{text}");
        }
        assert_eq!(
            labels("from fe80::1ff:fe23:4567:890a"),
            [("IP_ADDRESS".to_owned(), "fe80::1ff:fe23:4567:890a")]
        );
    }

    #[test]
    fn personal_data_is_redacted_by_default() {
        assert_eq!(Pii::default().default_policy(), Policy::Redact);
    }

    #[test]
    fn finds_each_kind() {
        let found = labels(
            "ada@example.co.uk, +44 20 7946 0958, (415) 555-0132, 4111 1111 1111 1111, \
             GB82 WEST 1234 5698 7654 32, 123-45-6789, 192.168.0.1, 2001:db8::8a2e:370:7334",
        );
        let expect = [
            ("EMAIL", "ada@example.co.uk"),
            ("PHONE", "+44 20 7946 0958"),
            ("PHONE", "(415) 555-0132"),
            ("CREDIT_CARD", "4111 1111 1111 1111"),
            ("IBAN", "GB82 WEST 1234 5698 7654 32"),
            ("SSN", "123-45-6789"),
            ("IP_ADDRESS", "192.168.0.1"),
            ("IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ];
        let found: Vec<(&str, &str)> = found.iter().map(|(l, t)| (l.as_str(), *t)).collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn checksums_reject_look_alikes() {
        for text in [
            "order 4111 1111 1111 1112",
            "GB82 WEST 1234 5698 7654 33",
            "SSN 000-12-3456 or 666-12-3456",
            "version 1.2.3.400",
            "at 12:30:45 today",
            "ratio 3.14159",
            "born 1990-12-31",
        ] {
            assert_eq!(labels(text), vec![], "{text}");
        }
    }

    #[test]
    fn sees_through_full_width_and_invisible_characters() {
        let text = "card \u{FF14}111\u{200B}1111 1111 1111, MAIL ADA@EXAMPLE.COM";
        let found = labels(text);
        assert_eq!(
            found[0],
            ("CREDIT_CARD".into(), "\u{FF14}111\u{200B}1111 1111 1111")
        );
        assert_eq!(found[1], ("EMAIL".into(), "ADA@EXAMPLE.COM"));
    }

    #[test]
    fn other_spaces_do_not_split_a_card_number() {
        for space in ['\u{2002}', '\u{A0}', '\u{2009}', '\u{3000}'] {
            let card = format!("4111{space}1111{space}1111{space}1111");
            let text = format!("pay with {card} today");
            let found = labels(&text);
            assert_eq!(
                found,
                [("CREDIT_CARD".into(), card.as_str())],
                "U+{:04X}",
                space as u32
            );
        }
    }

    #[test]
    fn phone_formats_seen_in_the_tuning_half() {
        for phone in [
            "(420) 206-0479x137",
            "+1-948-238-3197x7378",
            "001-339-395-1360x5818",
            "+49(0)3538 607434",
            "+33 (0)3 51 44 81 68",
            "0141 496 0071",
            "(02)-7667-9014",
            "03 39 94 95 18",
            "(03759) 55650",
            "08.8456.9369",
        ] {
            let text = format!("call me on {phone} today");
            assert_eq!(labels(&text), vec![("PHONE".into(), phone)], "{phone}");
        }
        // A date in the same shape, and an ungrouped run of digits, are not phone numbers.
        assert_eq!(labels("born 05.03.1981, order 0835158970"), vec![]);
    }

    #[test]
    fn jcb_and_maestro_lengths() {
        // Luhn-valid 15-digit JCB and 12-digit Maestro numbers.
        let found = labels("JCB 180056355150586, Maestro 676270209916");
        let found: Vec<&str> = found.iter().map(|(_, t)| *t).collect();
        assert_eq!(found, ["180056355150586", "676270209916"]);
        // Twelve digits outside the Maestro ranges are not a card, Luhn or not.
        assert_eq!(labels("ref 561797405421"), vec![]);
    }

    #[test]
    fn compact_iban_and_card() {
        let found = labels("DE89370400440532013000 and 5500-0000-0000-0004");
        assert_eq!(found[0].0, "IBAN");
        assert_eq!(found[1], ("CREDIT_CARD".into(), "5500-0000-0000-0004"));
    }

    #[test]
    fn iban_stops_before_following_words() {
        let found = labels("IBAN DE89 3704 0044 0532 0130 00 AB12 please");
        assert_eq!(found, vec![("IBAN".into(), "DE89 3704 0044 0532 0130 00")]);
    }

    #[test]
    fn redaction_offsets_are_exact_in_multibyte_text() {
        let text = "Grüße — schreib an jürgen@example.de ✉, Tel. +49 30 123456789 ☎";
        let v = Pii::default().check_now(&Subject::text(text));
        assert_eq!(
            v.redacted.as_deref(),
            Some("Grüße — schreib an [EMAIL] ✉, Tel. [PHONE] ☎")
        );
        assert_eq!(&text[v.spans[0].start..v.spans[0].end], "jürgen@example.de");
    }
}
