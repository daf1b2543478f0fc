//! Text from data inside messages: never more than about 200 bytes of it, so a
//! 10 MB header line or cell gives a short error.

/// At most `max` bytes of `text` (cut at a character boundary), with how much
/// was left out.
pub fn capped(text: &str, max: usize) -> String {
    match head(text, max) {
        Some(h) => format!("{h}… ({} bytes in all)", text.len()),
        None => text.to_string(),
    }
}

/// The first `max` bytes of `text` at a character boundary, or `None` when the
/// whole text fits.
fn head(text: &str, max: usize) -> Option<&str> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

/// A value from a file, quoted for a message: `"abc"`, at most about 100 bytes.
pub fn quoted(value: &str) -> String {
    match head(value, 100) {
        Some(h) => format!("{h:?}… ({} bytes in all)", value.len()),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_says_how_long_it_was() {
        assert_eq!(capped("short", 200), "short");
        let long = "é".repeat(1000);
        let c = capped(&long, 201);
        assert!(c.len() < 240, "{c}");
        assert!(c.ends_with("(2000 bytes in all)"), "{c}");
        assert_eq!(quoted("abc"), "\"abc\"");
        let q = quoted(&"x".repeat(10_000_000));
        assert!(q.len() < 150, "{q}");
        assert!(q.contains("10000000 bytes"), "{q}");
    }
}
