//! How many instances one launch makes, as EC2's MinCount and MaxCount:
//! up to the maximum, and at least the minimum or none at all.

use std::str::FromStr;

/// `--count N` (exactly N) or `--count MIN:MAX`, as the aws CLI writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchCount {
    pub min: u32,
    pub max: u32,
}

impl LaunchCount {
    /// Exactly `n`.
    pub const fn exactly(n: u32) -> Self {
        Self { min: n, max: n }
    }
}

impl Default for LaunchCount {
    fn default() -> Self {
        Self::exactly(1)
    }
}

/// A count that cannot be launched.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("count '{0}' is not N or MIN:MAX (whole numbers, e.g. 3 or 2:5)")]
    Malformed(String),
    #[error("count '{0}' asks for none: the minimum must be at least 1")]
    Zero(String),
    #[error("count '{0}' has its minimum above its maximum; write MIN:MAX")]
    MinAboveMax(String),
}

impl FromStr for LaunchCount {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| Error::Malformed(text.into()))
        };
        let count = match text.split_once(':') {
            Some((min, max)) => Self {
                min: number(min)?,
                max: number(max)?,
            },
            None => Self::exactly(number(text)?),
        };
        if count.min == 0 {
            return Err(Error::Zero(text.into()));
        }
        if count.min > count.max {
            return Err(Error::MinAboveMax(text.into()));
        }
        Ok(count)
    }
}

impl std::fmt::Display for LaunchCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.max)
        } else {
            write!(f, "{}:{}", self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_as_the_aws_cli_writes_them() {
        assert_eq!("3".parse(), Ok(LaunchCount::exactly(3)));
        assert_eq!("2:5".parse(), Ok(LaunchCount { min: 2, max: 5 }));
        assert_eq!("1:1".parse(), Ok(LaunchCount::exactly(1)));
        assert_eq!(LaunchCount { min: 2, max: 5 }.to_string(), "2:5");
        assert_eq!(LaunchCount::exactly(4).to_string(), "4");
        for bad in ["", "x", "-1", "2:", ":3", "1:2:3", "1.5"] {
            assert!(
                matches!(bad.parse::<LaunchCount>(), Err(Error::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!("0".parse::<LaunchCount>(), Err(Error::Zero(_))));
        assert!(matches!("0:3".parse::<LaunchCount>(), Err(Error::Zero(_))));
        assert!(matches!(
            "5:2".parse::<LaunchCount>(),
            Err(Error::MinAboveMax(_))
        ));
    }
}
