//! Text from data inside messages: never more than about 200 bytes of it, so a
//! 10 MB header line or cell gives a short error.

/// At most `max` bytes of `text` (cut at a character boundary), with how much
/// was left out.
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// A value from a file, quoted for a message: `"abc"`, at most about 100 bytes.
pub fn quoted(value: &str) -> String {
    if value.len() <= 100 {
        return format!("{value:?}");
    }
    format!("{:?}…", capped(value, 100).split('…').next().unwrap_or(""))
        + &format!(" ({} bytes in all)", value.len())
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
