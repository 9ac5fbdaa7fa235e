//! The length notation of `trace synth --prompt/--output`, parsed into a [`LengthConfig`].

use crate::TraceError;
use specsim_sim::trace_config::LengthConfig;
use std::path::PathBuf;

fn bad(msg: String) -> TraceError {
    TraceError::LengthSpec(msg)
}

/// Parses the length notation of `trace synth --prompt/--output`: `fixed:N`, `uniform:MIN,MAX`,
/// `lognormal:MEAN,STD[,MIN,MAX]` or `empirical:FILE[#prompt|#output]`.
pub fn parse_length(spec: &str) -> Result<LengthConfig, TraceError> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let nums = |n_min: usize, n_max: usize| -> Result<Vec<f64>, TraceError> {
        let v: Vec<f64> = rest
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("`{x}` in `{spec}` is not a number")))
            })
            .collect::<Result<_, _>>()?;
        if v.len() < n_min || v.len() > n_max {
            return Err(bad(format!(
                "`{spec}`: expected {n_min} to {n_max} numbers after `{kind}:`"
            )));
        }
        Ok(v)
    };
    let int = |x: f64| -> Result<u32, TraceError> {
        if x.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&x) {
            return Err(bad(format!("`{spec}`: {x} is not a token count")));
        }
        Ok(x as u32)
    };
    Ok(match kind {
        "fixed" => LengthConfig::Fixed { value: int(nums(1, 1)?[0])? },
        "uniform" => {
            let v = nums(2, 2)?;
            LengthConfig::Uniform { min: int(v[0])?, max: int(v[1])? }
        }
        "lognormal" => {
            let v = nums(2, 4)?;
            LengthConfig::Lognormal {
                mean: v[0],
                std: v[1],
                min: v.get(2).map_or(Ok(1), |&x| int(x))?,
                max: v.get(3).map_or(Ok(32_768), |&x| int(x))?,
            }
        }
        "empirical" => {
            let (file, column) = match rest.rsplit_once('#') {
                Some((f, c)) => (f, Some(c.to_string())),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(bad(format!("`{spec}`: expected empirical:FILE")));
            }
            LengthConfig::Empirical { path: PathBuf::from(file), column }
        }
        _ => return Err(bad(format!("`{spec}`: expected fixed:N, uniform:MIN,MAX, lognormal:MEAN,STD[,MIN,MAX] or empirical:FILE"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_notation() {
        assert_eq!(
            parse_length("fixed:128").unwrap(),
            LengthConfig::Fixed { value: 128 }
        );
        assert_eq!(
            parse_length("uniform:10,20").unwrap(),
            LengthConfig::Uniform { min: 10, max: 20 }
        );
        assert_eq!(
            parse_length("lognormal:1000,500").unwrap(),
            LengthConfig::Lognormal {
                mean: 1000.0,
                std: 500.0,
                min: 1,
                max: 32_768
            }
        );
        assert_eq!(
            parse_length("empirical:a/b.csv#output").unwrap(),
            LengthConfig::Empirical {
                path: "a/b.csv".into(),
                column: Some("output".into())
            }
        );
        assert!(parse_length("fixed:1.5").is_err());
        assert!(parse_length("zipf:2").is_err());
        assert!(parse_length("uniform:1").is_err());
    }
}
