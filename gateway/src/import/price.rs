//! Provider prices as decimal strings of dollars per token, converted exactly — integers only —
//! to our unit: millionths of a dollar per million tokens (dollars per token ×10¹²).

/// Why a price string is not imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("negative price {0:?} (a variable-priced router)")]
    Negative(String),
    #[error("unparseable price {0:?}")]
    Unparseable(String),
    #[error("price {0:?} is out of range")]
    OutOfRange(String),
}

/// Dollars per token ×10¹², rounded half up below a millionth of a dollar per million tokens:
/// `"0.0000025"` → `2_500_000`. Accepts `123`, `0.5`, `.5`, `5.` and an exponent (`2.5e-6`).
pub fn micros_per_mtok(text: &str) -> Result<i64, PriceError> {
    let raw = text.trim();
    if raw.starts_with('-') {
        return Err(PriceError::Negative(text.to_string()));
    }
    let unparseable = || PriceError::Unparseable(text.to_string());
    let out_of_range = || PriceError::OutOfRange(text.to_string());
    let unsigned = raw.strip_prefix('+').unwrap_or(raw);
    let (number, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((number, exponent)) => (number, exponent.parse::<i32>().map_err(|_| unparseable())?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(unparseable());
    }
    let fraction = fraction.trim_end_matches('0');
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(0);
    }
    // value = significant × 10^-(scale), and we want value × 10^12.
    let scale = i64::try_from(fraction.len()).map_err(|_| out_of_range())? - i64::from(exponent);
    let shift = 12 - scale;
    if significant.len() > 30 {
        return Err(out_of_range());
    }
    let mantissa: i128 = significant.parse().map_err(|_| out_of_range())?;
    let scaled = if shift >= 0 {
        u32::try_from(shift)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or_else(out_of_range)?
    } else {
        let drop = shift.unsigned_abs();
        if drop > significant.len() as u64 {
            0
        } else {
            let divisor = 10i128.pow(drop as u32);
            (mantissa + divisor / 2) / divisor
        }
    };
    i64::try_from(scaled).map_err(|_| out_of_range())
}

/// A model's tier from its price, the higher of input and output per million tokens:
/// up to $1 is `basic`, up to $10 `advanced`, above that `premium`. The built-in catalog's
/// tiers follow the same lines (gpt-4o-mini basic, gpt-4o advanced, claude-3.5-sonnet premium).
pub fn tier(input_micros_per_mtok: i64, output_micros_per_mtok: i64) -> &'static str {
    let highest = input_micros_per_mtok.max(output_micros_per_mtok);
    if highest <= 1_000_000 {
        "basic"
    } else if highest <= 10_000_000 {
        "advanced"
    } else {
        "premium"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrouter_prices_convert_exactly() {
        assert_eq!(micros_per_mtok("0.0000025"), Ok(2_500_000));
        assert_eq!(micros_per_mtok("0.00001"), Ok(10_000_000));
        assert_eq!(micros_per_mtok("0.00000015"), Ok(150_000));
        assert_eq!(micros_per_mtok("0.000000075"), Ok(75_000));
        assert_eq!(micros_per_mtok("0.00000001875"), Ok(18_750));
        assert_eq!(micros_per_mtok("0.000000000001"), Ok(1));
        assert_eq!(micros_per_mtok("0"), Ok(0));
        assert_eq!(micros_per_mtok("0.0"), Ok(0));
        assert_eq!(micros_per_mtok("1"), Ok(1_000_000_000_000));
        assert_eq!(micros_per_mtok(" 0.00006 "), Ok(60_000_000));
    }

    #[test]
    fn floats_would_get_these_wrong() {
        // 0.1 + 0.2 style traps: each must be exact.
        assert_eq!(micros_per_mtok("0.0000003"), Ok(300_000));
        assert_eq!(micros_per_mtok("0.0000007"), Ok(700_000));
        assert_eq!(micros_per_mtok("0.000000123456789012"), Ok(123_457));
        assert_eq!(
            micros_per_mtok("0.0000025000000000000000000000000000000"),
            Ok(2_500_000)
        );
    }

    #[test]
    fn exponents_and_bare_points() {
        assert_eq!(micros_per_mtok("2.5e-6"), Ok(2_500_000));
        assert_eq!(micros_per_mtok("1E-5"), Ok(10_000_000));
        assert_eq!(micros_per_mtok(".5"), Ok(500_000_000_000));
        assert_eq!(micros_per_mtok("5."), Ok(5_000_000_000_000));
        assert_eq!(micros_per_mtok("1e-30"), Ok(0));
    }

    #[test]
    fn below_a_unit_rounds_half_up() {
        assert_eq!(micros_per_mtok("0.0000000000005"), Ok(1));
        assert_eq!(micros_per_mtok("0.0000000000004999"), Ok(0));
        assert_eq!(micros_per_mtok("0.0000000000015"), Ok(2));
    }

    #[test]
    fn negative_garbage_and_huge_prices_are_refused() {
        assert!(matches!(
            micros_per_mtok("-1"),
            Err(PriceError::Negative(_))
        ));
        for garbage in [
            "", " ", ".", "abc", "1.2.3", "0x10", "1e", "e5", "1,5", "NaN", "inf", "1 2",
        ] {
            assert!(
                matches!(micros_per_mtok(garbage), Err(PriceError::Unparseable(_))),
                "{garbage:?}"
            );
        }
        assert!(matches!(
            micros_per_mtok("10000000"),
            Err(PriceError::OutOfRange(_))
        ));
        assert!(matches!(
            micros_per_mtok("1e99999"),
            Err(PriceError::OutOfRange(_))
        ));
    }

    #[test]
    fn tiers_follow_the_documented_thresholds() {
        assert_eq!(tier(0, 0), "basic");
        assert_eq!(tier(150_000, 600_000), "basic");
        assert_eq!(tier(1_000_000, 1_000_000), "basic");
        assert_eq!(tier(1_000_000, 1_000_001), "advanced");
        assert_eq!(tier(2_500_000, 10_000_000), "advanced");
        assert_eq!(tier(3_000_000, 15_000_000), "premium");
        assert_eq!(tier(20_000_000, 0), "premium");
    }
}
