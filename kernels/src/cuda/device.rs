//! Where a model lives: `cpu` or `cuda:N` (the string form used by `Model.create/load(…, { device })` and the
//! services' `SPARK_DEVICE`).
use std::fmt;

use crate::error::{Error, Result};

/// The most CUDA devices one process addresses (an index above this is a typo, not a machine).
pub const MAX_CUDA_DEVICES: u32 = 1024;

/// A model's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The CUDA device of this ordinal (as the driver numbers them, after `CUDA_VISIBLE_DEVICES`).
    Cuda(u32),
}

impl Device {
    /// Parses `cpu` or `cuda:N` (N a decimal ordinal without sign or leading zeros, < 1024). Anything else,
    /// including `cuda` without an index, is an `InvalidInput` error that quotes the value (at most 64 chars).
    pub fn parse(s: &str) -> Result<Device> {
        let bad = || {
            let shown: String = s.chars().take(64).collect();
            Error::invalid(format!(
                "device must be 'cpu' or 'cuda:N' (N = 0..{}), got {shown:?}",
                MAX_CUDA_DEVICES - 1
            ))
        };
        if s == "cpu" {
            return Ok(Device::Cpu);
        }
        let idx = s.strip_prefix("cuda:").ok_or_else(bad)?;
        if idx.is_empty()
            || idx.len() > 4
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return Err(bad());
        }
        let n: u32 = idx.parse().map_err(|_| bad())?;
        if n >= MAX_CUDA_DEVICES {
            return Err(bad());
        }
        Ok(Device::Cuda(n))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn parses_cpu_and_cuda_ordinals() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("cuda:0").unwrap(), Device::Cuda(0));
        assert_eq!(Device::parse("cuda:7").unwrap(), Device::Cuda(7));
        assert_eq!(Device::parse("cuda:1023").unwrap(), Device::Cuda(1023));
        assert_eq!(Device::default(), Device::Cpu);
        for d in [Device::Cpu, Device::Cuda(0), Device::Cuda(12)] {
            assert_eq!(
                Device::parse(&d.to_string()).unwrap(),
                d,
                "round trip of {d}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for s in [
            "",
            "CPU",
            "gpu",
            "cuda",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda:01",
            "cuda:1024",
            "cuda:99999",
            "cuda:1 ",
            " cuda:1",
            "cuda:1.0",
            "cuda:0x1",
            "cuda:１",
            "cuda:0:1",
            "cpu:0",
            "mps",
        ] {
            let e = Device::parse(s).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidInput, "{s:?}");
            assert!(
                e.message.contains("'cpu' or 'cuda:N'"),
                "{s:?}: {}",
                e.message
            );
        }
        let long = "x".repeat(10_000);
        assert!(
            Device::parse(&long).unwrap_err().message.len() < 200,
            "the quoted value is bounded"
        );
    }
}
