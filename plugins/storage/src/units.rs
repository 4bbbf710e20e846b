//! Scaled sizes as libvirt reads them (`virScaleInteger`): `1G`, `512MiB`,
//! `10GB`, `4096`, and the `unit=` attribute of `<capacity>`.

/// Multiplies `value` by the scale `suffix` names (`k`, `KiB`, `KB`, `M`, ...,
/// `E`; `b`/`byte`/`bytes`; empty means bytes). Decimal suffixes (`KB`) use
/// 1000, the others 1024.
pub fn scale(value: u64, suffix: &str) -> Result<u64, String> {
    let suffix = suffix.trim();
    let lower = suffix.to_ascii_lowercase();
    let factor: u64 = if suffix.is_empty() || matches!(lower.as_str(), "b" | "byte" | "bytes") {
        1
    } else {
        let mut chars = lower.chars();
        let power_char = chars.next().unwrap_or(' ');
        let rest: String = chars.collect();
        let base: u64 = match rest.as_str() {
            "" | "ib" => 1024,
            "b" => 1000,
            _ => return Err(format!("unknown suffix '{suffix}'")),
        };
        let power = match power_char {
            'k' => 1,
            'm' => 2,
            'g' => 3,
            't' => 4,
            'p' => 5,
            'e' => 6,
            _ => return Err(format!("unknown suffix '{suffix}'")),
        };
        base.checked_pow(power)
            .ok_or_else(|| format!("unknown suffix '{suffix}'"))?
    };
    // off_t is signed: nothing larger than i64::MAX can exist.
    value
        .checked_mul(factor)
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(|| "value too large".to_string())
}

/// Parses `1G`, `1024`, `10 GiB`: digits, then an optional suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("malformed size '{text}'"));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("malformed size '{text}'"))?;
    scale(value, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes_scale_as_libvirt() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("10k").unwrap(), 10240);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("7bytes").unwrap(), 7);
        assert_eq!(scale(5, "G").unwrap(), 5 << 30);
    }

    #[test]
    fn sizes_that_do_not_parse_are_errors() {
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999E").is_err());
    }
}
