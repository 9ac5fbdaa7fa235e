//! Prints the schema, row count and distinct values of small columns of an operator table (parquet):
//! `cargo run -p specsim-calibrate --example ops_inspect -- FILE.parquet [COLUMN=VALUE ...]`.

use specsim_calibrate::ops::tables::{read_parquet, str_col};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: ops_inspect FILE.parquet [COLUMN=VALUE ...]");
        std::process::exit(2);
    };
    let filters: Vec<(String, String)> = args
        .filter_map(|a| {
            a.split_once('=')
                .map(|(c, v)| (c.to_string(), v.to_string()))
        })
        .collect();
    let df = match read_parquet(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("{} rows", df.height());
    let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in df.columns() {
        let name = c.name().to_string();
        println!("  {name}: {:?}", c.dtype());
        cols.insert(name.clone(), str_col(&df, &path, &name).unwrap_or_default());
    }
    let keep: Vec<usize> = (0..df.height())
        .filter(|&i| {
            filters
                .iter()
                .all(|(c, v)| cols.get(c).is_some_and(|col| &col[i] == v))
        })
        .collect();
    println!("{} rows match {filters:?}", keep.len());
    for (name, col) in &cols {
        let mut distinct: Vec<&String> = keep.iter().map(|&i| &col[i]).collect();
        distinct.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(b),
        });
        distinct.dedup();
        if distinct.len() <= 80 {
            println!("  {name} ({}): {distinct:?}", distinct.len());
        } else {
            println!(
                "  {name} ({} distinct), e.g. {:?}",
                distinct.len(),
                &distinct[..10]
            );
        }
    }
}
