//! What the three binaries (`echo-server`, `echo-client`, `echo-bench`)
//! share on their command lines: a rejected command line as one line and
//! exit status 2 ([`usage_error`]), and the parsers for seconds and byte
//! sizes their options take.
//!
//! The libraries never parse arguments: this crate, and clap with it, is a
//! dependency of the binaries only.

use std::process::ExitCode;
use std::time::Duration;

/// What the binaries do with a command line clap rejects: `--help` and
/// `--version` print and exit 0 (and a missing subcommand prints the help),
/// anything else becomes one `error: ... (see --help)` line on standard
/// error and exit status 2, instead of clap's several lines of usage.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    use std::io::Write;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    // A closed standard error leaves nothing better to do than exit.
    let _ = writeln!(std::io::stderr().lock(), "{first} (see --help)");
    ExitCode::from(2)
}

/// Zero or more seconds, fractions allowed (`5`, `0.5`).
pub fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more, such as 5 or 0.5".to_string())
}

/// More than zero seconds: for a timeout or a duration, where zero would
/// mean "wait forever" to a socket call or end a run before it began.
pub fn positive_secs(s: &str) -> Result<Duration, String> {
    secs(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected a number of seconds above 0, such as 5 or 0.5".to_string())
}

/// A positive byte count, with an optional K, M or G suffix (powers of
/// 1024: `64`, `64K`, `1M`; `KiB`, `MiB` and `GiB` too).
pub fn bytes(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        _ => return Err("expected a number of bytes, such as 64, 64K or 1M".into()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| "expected a number of bytes above 0, such as 64, 64K or 1M".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Suffixes scale by powers of 1024; zero, overflow and unknown units
    /// are one-line errors, never a panic.
    #[test]
    fn byte_sizes_take_suffixes_and_refuse_nonsense() {
        assert_eq!(bytes("64"), Ok(64));
        assert_eq!(bytes("64K"), Ok(64 << 10));
        assert_eq!(bytes("1MiB"), Ok(1 << 20));
        assert_eq!(bytes("2g"), Ok(2 << 30));
        for bad in [
            "",
            "0",
            "0K",
            "K",
            "-1",
            "1T",
            "1.5M",
            "99999999999999999999G",
        ] {
            let e = bytes(bad).unwrap_err();
            assert!(e.starts_with("expected a number of bytes"), "{bad:?}: {e}");
        }
    }

    /// Seconds take fractions; a negative, a NaN or a huge number is an
    /// error, and zero only where it is allowed.
    #[test]
    fn seconds_take_fractions_and_zero_only_where_allowed() {
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        assert_eq!(secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_secs("5"), Ok(Duration::from_secs(5)));
        assert!(positive_secs("0").is_err());
        for bad in ["", "-1", "NaN", "inf", "1e30", "five"] {
            assert!(secs(bad).is_err(), "{bad:?}");
            assert!(positive_secs(bad).is_err(), "{bad:?}");
        }
    }
}
