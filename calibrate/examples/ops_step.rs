//! Prints one composed step's breakdown: `ops_step DIR GPU MODEL TP DTYPE BATCH TOKENS CONTEXT` (decode
//! or verify) or with TOKENS = 0 a prefill of CONTEXT tokens.

use specsim_calibrate::ops::compose::Composer;
use specsim_calibrate::ops::tables::Notes;
use specsim_calibrate::ops::{catalog_model, GpuTables};
use std::path::PathBuf;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 8 {
        eprintln!("usage: ops_step DIR GPU MODEL TP DTYPE BATCH TOKENS CONTEXT");
        std::process::exit(2);
    }
    let num = |i: usize| a[i].parse::<f64>().unwrap_or(0.0);
    let run = || -> specsim_calibrate::Result<()> {
        let loc = GpuTables::locate(&PathBuf::from(&a[0]), &a[1])?;
        let m = catalog_model(&a[2], "MODEL")?;
        let tp = num(3) as u32;
        let ops = loc.open(&m, tp, &a[4], "bfloat16")?;
        let c = Composer {
            model: &m,
            tp,
            ops: &ops,
        };
        let mut notes = Notes::new();
        let b = if num(6) == 0.0 {
            c.prefill(num(7), &mut notes)?
        } else {
            c.decode(num(5), num(6), num(7), &mut notes)?
        };
        println!("{:.3} ms: {b:?}", b.total() / 1e6);
        for n in notes.lines() {
            println!("  {n}");
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
