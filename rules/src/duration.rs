//! Human durations in rule and configuration files: `500ms`, `30s`, `5m`, `1h`, `1d`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written as a number and a unit, stored in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub u64);

impl HumanDuration {
    /// Returns the duration in milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

/// The error for a duration that is not a number followed by `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: write a whole number and a unit (ms, s, m, h, d), such as `30s` or `5m`")]
pub struct DurationError(pub String);

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let value: u64 = digits
            .parse()
            .map_err(|_| DurationError(text.to_string()))?;
        let scale = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(DurationError(text.to_string())),
        };
        value
            .checked_mul(scale)
            .map(HumanDuration)
            .ok_or_else(|| DurationError(text.to_string()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return write!(f, "0s");
        }
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (scale, unit) in units {
            if ms >= scale && ms.is_multiple_of(scale) {
                return write!(f, "{}{unit}", ms / scale);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_units() {
        assert_eq!("500ms".parse(), Ok(HumanDuration(500)));
        assert_eq!("30s".parse(), Ok(HumanDuration(30_000)));
        assert_eq!("5m".parse(), Ok(HumanDuration(300_000)));
        assert_eq!("2h".parse(), Ok(HumanDuration(7_200_000)));
        assert_eq!("1d".parse(), Ok(HumanDuration(86_400_000)));
    }

    #[test]
    fn parse_rejects_missing_unit_and_garbage() {
        for text in ["5", "m", "5 minutes", "-5m", "1.5m", ""] {
            assert!(text.parse::<HumanDuration>().is_err(), "{text}");
        }
    }

    #[test]
    fn display_picks_largest_unit() {
        assert_eq!(HumanDuration(300_000).to_string(), "5m");
        assert_eq!(HumanDuration(90_000).to_string(), "90s");
        assert_eq!(HumanDuration(1_500).to_string(), "1500ms");
        assert_eq!(HumanDuration(0).to_string(), "0s");
    }
}
