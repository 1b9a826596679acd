//! IDNA2008 label rules (RFC 5891 §5.4, RFC 5892, RFC 5893) for the domain of
//! an address, computed from Unicode properties rather than a frozen table.
//!
//! It only judges one label at a time (plus the cross-label bidi rule the
//! caller asks for); it does no mapping and no punycode: the caller does the
//! UTS-46 mapping first, as email-validator does.

use icu_properties::props::{
    BidiClass, CanonicalCombiningClass, ChangesWhenNfkcCasefolded, DefaultIgnorableCodePoint,
    GeneralCategory, HangulSyllableType, JoinControl, JoiningType, NoncharacterCodePoint, Script,
    WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};

/// The RFC 5892 derived property value of a code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Pvalid,
    ContextJ,
    ContextO,
    Disallowed,
}

/// RFC 5892 §3: the derivation, in the order the RFC gives its rules.
pub(crate) fn class(c: char) -> Class {
    let cp = c as u32;
    // §2.6 Exceptions (F).
    match cp {
        0x00DF | 0x03C2 | 0x06FD | 0x06FE | 0x0F0B | 0x3007 => return Class::Pvalid,
        0x00B7 | 0x0375 | 0x05F3 | 0x05F4 | 0x30FB | 0x0660..=0x0669 | 0x06F0..=0x06F9 => {
            return Class::ContextO;
        }
        0x0640 | 0x07FA | 0x302E | 0x302F | 0x3031..=0x3035 | 0x303B => {
            return Class::Disallowed;
        }
        _ => {}
    }
    // §2.11 LDH (H): only lower-case letters; upper case is Unstable below.
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
        return Class::Pvalid;
    }
    let gc = CodePointMapData::<GeneralCategory>::new().get(c);
    // §2.10 Unassigned (J).
    if gc == GeneralCategory::Unassigned
        && !CodePointSetData::new::<NoncharacterCodePoint>().contains(c)
    {
        return Class::Disallowed;
    }
    // §2.8 JoinControl (H).
    if CodePointSetData::new::<JoinControl>().contains(c) {
        return Class::ContextJ;
    }
    // §2.2 Unstable (B), §2.3 IgnorableProperties (C).
    if CodePointSetData::new::<ChangesWhenNfkcCasefolded>().contains(c)
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<WhiteSpace>().contains(c)
        || CodePointSetData::new::<NoncharacterCodePoint>().contains(c)
    {
        return Class::Disallowed;
    }
    // §2.4 IgnorableBlocks (D): Combining Diacritical Marks for Symbols,
    // Musical Symbols, Ancient Greek Musical Notation.
    if matches!(cp, 0x20D0..=0x20FF | 0x1D100..=0x1D1FF | 0x1D200..=0x1D24F) {
        return Class::Disallowed;
    }
    // §2.9 OldHangulJamo (I).
    let hst = CodePointMapData::<HangulSyllableType>::new().get(c);
    if hst == HangulSyllableType::LeadingJamo
        || hst == HangulSyllableType::VowelJamo
        || hst == HangulSyllableType::TrailingJamo
    {
        return Class::Disallowed;
    }
    // §2.1 LetterDigits (A).
    match gc {
        GeneralCategory::LowercaseLetter
        | GeneralCategory::UppercaseLetter
        | GeneralCategory::OtherLetter
        | GeneralCategory::DecimalNumber
        | GeneralCategory::ModifierLetter
        | GeneralCategory::NonspacingMark
        | GeneralCategory::SpacingMark => Class::Pvalid,
        _ => Class::Disallowed,
    }
}

pub(crate) fn is_mark(c: char) -> bool {
    matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// RFC 5891 §5.4 for a U-label: NFC, hyphens, leading combining mark,
/// code point classes with their contextual rules, and the per-label bidi
/// rule (RFC 5893 §2, applied only to labels holding right-to-left text).
pub(crate) fn check_label(label: &str) -> Result<(), String> {
    let chars: Vec<char> = label.chars().collect();
    let Some(&first) = chars.first() else {
        return Err("empty label".into());
    };
    if !unicode_normalization::is_nfc(label) {
        return Err(format!("label {label:?} is not in Normalization Form C"));
    }
    if chars.len() >= 4 && chars[2] == '-' && chars[3] == '-' {
        return Err(format!(
            "label {label:?} has hyphens in the 3rd and 4th position"
        ));
    }
    if first == '-' || chars.last() == Some(&'-') {
        return Err(format!("label {label:?} starts or ends with a hyphen"));
    }
    if is_mark(first) {
        return Err(format!("label {label:?} begins with a combining mark"));
    }
    for (pos, &c) in chars.iter().enumerate() {
        let ok = match class(c) {
            Class::Pvalid => true,
            Class::ContextJ => valid_contextj(&chars, pos),
            Class::ContextO => valid_contexto(&chars, pos),
            Class::Disallowed => {
                return Err(format!(
                    "code point U+{:04X} at position {} of {label:?} is not allowed",
                    c as u32,
                    pos + 1
                ));
            }
        };
        if !ok {
            return Err(format!(
                "code point U+{:04X} is not allowed at position {} of {label:?} in this context",
                c as u32,
                pos + 1
            ));
        }
    }
    check_bidi(&chars, false).map_err(|e| format!("label {label:?}: {e}"))
}

fn ccc(c: char) -> u8 {
    CodePointMapData::<CanonicalCombiningClass>::new().get(c).0
}

/// RFC 5892 Appendix A.1 (ZERO WIDTH NON-JOINER) and A.2 (ZERO WIDTH JOINER).
fn valid_contextj(label: &[char], pos: usize) -> bool {
    const VIRAMA: u8 = 9;
    if pos > 0 && ccc(label[pos - 1]) == VIRAMA {
        return true;
    }
    if label[pos] != '\u{200C}' {
        return false;
    }
    let jt = CodePointMapData::<JoiningType>::new();
    let before = label[..pos]
        .iter()
        .rev()
        .map(|&c| jt.get(c))
        .find(|&t| t != JoiningType::Transparent);
    let after = label[pos + 1..]
        .iter()
        .map(|&c| jt.get(c))
        .find(|&t| t != JoiningType::Transparent);
    matches!(
        before,
        Some(JoiningType::LeftJoining | JoiningType::DualJoining)
    ) && matches!(
        after,
        Some(JoiningType::RightJoining | JoiningType::DualJoining)
    )
}

/// RFC 5892 Appendix A.3 to A.9.
fn valid_contexto(label: &[char], pos: usize) -> bool {
    let script = CodePointMapData::<Script>::new();
    match label[pos] as u32 {
        0x00B7 => {
            pos > 0 && pos + 1 < label.len() && label[pos - 1] == 'l' && label[pos + 1] == 'l'
        }
        0x0375 => pos + 1 < label.len() && script.get(label[pos + 1]) == Script::Greek,
        0x05F3 | 0x05F4 => pos > 0 && script.get(label[pos - 1]) == Script::Hebrew,
        0x30FB => label.iter().any(|&c| {
            c != '\u{30FB}'
                && matches!(
                    script.get(c),
                    Script::Hiragana | Script::Katakana | Script::Han
                )
        }),
        0x0660..=0x0669 => !label.iter().any(|&c| ('\u{6F0}'..='\u{6F9}').contains(&c)),
        0x06F0..=0x06F9 => !label.iter().any(|&c| ('\u{660}'..='\u{669}').contains(&c)),
        _ => false,
    }
}

pub(crate) fn has_rtl(s: &str) -> bool {
    let bidi = CodePointMapData::<BidiClass>::new();
    s.chars().any(|c| {
        matches!(
            bidi.get(c),
            BidiClass::RightToLeft | BidiClass::ArabicLetter | BidiClass::ArabicNumber
        )
    })
}

/// RFC 5893 §2, the Bidi Rule. With `check_ltr` the rule applies even to a
/// label without right-to-left characters: §1.4 makes it apply to every label
/// of a domain once any label holds right-to-left text.
pub(crate) fn check_bidi(label: &[char], check_ltr: bool) -> Result<(), String> {
    let bidi = CodePointMapData::<BidiClass>::new();
    let classes: Vec<BidiClass> = label.iter().map(|&c| bidi.get(c)).collect();
    let rtl_text = classes.iter().any(|&d| {
        matches!(
            d,
            BidiClass::RightToLeft | BidiClass::ArabicLetter | BidiClass::ArabicNumber
        )
    });
    if !rtl_text && !check_ltr {
        return Ok(());
    }
    let Some(&first) = classes.first() else {
        return Ok(());
    };
    let rtl = match first {
        BidiClass::RightToLeft | BidiClass::ArabicLetter => true,
        BidiClass::LeftToRight => false,
        _ => return Err("the first character must be of direction L, R or AL".into()),
    };
    let mut valid_ending = false;
    let mut number_type: Option<BidiClass> = None;
    for (i, &d) in classes.iter().enumerate() {
        use BidiClass as B;
        if rtl {
            // §2 rule 2.
            if !matches!(
                d,
                B::RightToLeft
                    | B::ArabicLetter
                    | B::ArabicNumber
                    | B::EuropeanNumber
                    | B::EuropeanSeparator
                    | B::CommonSeparator
                    | B::EuropeanTerminator
                    | B::OtherNeutral
                    | B::BoundaryNeutral
                    | B::NonspacingMark
            ) {
                return Err(format!(
                    "direction of the character at position {} is not allowed in a right-to-left label",
                    i + 1
                ));
            }
            // §2 rule 3.
            if matches!(
                d,
                B::RightToLeft | B::ArabicLetter | B::EuropeanNumber | B::ArabicNumber
            ) {
                valid_ending = true;
            } else if d != B::NonspacingMark {
                valid_ending = false;
            }
            // §2 rule 4.
            if matches!(d, B::ArabicNumber | B::EuropeanNumber) {
                match number_type {
                    None => number_type = Some(d),
                    Some(t) if t != d => {
                        return Err(
                            "Arabic-Indic and European digits are mixed in a right-to-left label"
                                .into(),
                        );
                    }
                    Some(_) => {}
                }
            }
        } else {
            // §2 rule 5.
            if !matches!(
                d,
                B::LeftToRight
                    | B::EuropeanNumber
                    | B::EuropeanSeparator
                    | B::CommonSeparator
                    | B::EuropeanTerminator
                    | B::OtherNeutral
                    | B::BoundaryNeutral
                    | B::NonspacingMark
            ) {
                return Err(format!(
                    "direction of the character at position {} is not allowed in a left-to-right label",
                    i + 1
                ));
            }
            // §2 rule 6.
            if matches!(d, B::LeftToRight | B::EuropeanNumber) {
                valid_ending = true;
            } else if d != B::NonspacingMark {
                valid_ending = false;
            }
        }
    }
    if valid_ending {
        Ok(())
    } else {
        Err("the label ends with a character of a direction not allowed there".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_property_matches_rfc5892_examples() {
        assert_eq!(class('a'), Class::Pvalid);
        assert_eq!(class('A'), Class::Disallowed);
        assert_eq!(class('ß'), Class::Pvalid);
        assert_eq!(class('\u{200D}'), Class::ContextJ);
        assert_eq!(class('·'), Class::ContextO);
        assert_eq!(class('☃'), Class::Disallowed);
        assert_eq!(class('ü'), Class::Pvalid);
        assert_eq!(class('\u{1100}'), Class::Disallowed);
        assert_eq!(class('\u{0640}'), Class::Disallowed);
    }

    #[test]
    fn labels() {
        assert!(check_label("bücher").is_ok());
        assert!(check_label("l·l").is_ok());
        assert!(check_label("a·b").is_err());
        assert!(check_label("\u{301}a").is_err());
        assert!(check_label("ab--c").is_err());
        assert!(check_label("☃").is_err());
        // RFC 5893: a right-to-left label must not start with a digit.
        assert!(check_label("1\u{5d0}").is_err());
        assert!(check_label("\u{5d0}\u{5d1}").is_ok());
    }
}
