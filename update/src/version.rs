//! Versions compared as the boot manager compares them, so that "newer"
//! means the same thing to the box refusing a downgrade and to systemd-boot
//! picking the newest slot: runs of digits compare as numbers, runs of
//! letters alphabetically, a number after a letter run; anything else
//! separates. "0.10.0" > "0.9.3"; "1.0" < "1.0.1".

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Number(&'a str),
    Word(&'a str),
}

fn tokens(v: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Token::Number(v[start..i].trim_start_matches('0')));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Token::Word(&v[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (ta, tb) = (tokens(a), tokens(b));
    for (x, y) in ta.iter().zip(tb.iter()) {
        let o = match (x, y) {
            (Token::Number(m), Token::Number(n)) => m.len().cmp(&n.len()).then_with(|| m.cmp(n)),
            (Token::Word(m), Token::Word(n)) => m.cmp(n),
            (Token::Number(_), Token::Word(_)) => Ordering::Greater,
            (Token::Word(_), Token::Number(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ta.len().cmp(&tb.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(compare("0.10.0", "0.9.3"), Greater);
        assert_eq!(compare("0.1.0", "0.1.0"), Equal);
        assert_eq!(compare("1.0", "1.0.1"), Less);
        assert_eq!(compare("1.02", "1.2"), Equal, "leading zeros");
        assert_eq!(compare("0.2.0", "0.1.9"), Greater);
        assert_eq!(compare("1.0a", "1.0b"), Less);
        assert_eq!(compare("1.0.0", "1.0.a"), Greater, "a number after a word");
        assert_eq!(compare("99999999999999999999", "1"), Greater, "no overflow");
    }
}
