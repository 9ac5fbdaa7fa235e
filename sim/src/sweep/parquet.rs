//! `results.parquet`: the sweep table with typed columns, beside `results.csv`.
//!
//! Same columns and rows as the CSV. `cell` and the count columns (`requests`, `finished`,
//! `preemptions`, `events`) are INT64, the other summary columns DOUBLE; an axis column is INT64,
//! BOOLEAN or DOUBLE when every value parses as one, else a UTF-8 string (policy tables, hardware
//! names). Values are those of the CSV (metrics as printed there, to nine decimals). The grid size is
//! kept in the file's key-value metadata as `specsim.total_cells`, as the CSV keeps it in its first
//! line. Written with the `parquet` crate's column writers alone (no Arrow; see the crate feature
//! `parquet` of `specsim-sim`), uncompressed, one row group.

use super::{SweepTable, SUMMARY_COLUMNS};
use crate::SimError;
use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// Key of the grid size in the file's key-value metadata.
pub const TOTAL_CELLS_KEY: &str = "specsim.total_cells";

/// Key of the scenario fingerprint (see [`super::fingerprint`]) in the file's key-value metadata.
pub const FINGERPRINT_KEY: &str = "specsim.scenario_fingerprint";

/// Summary columns stored as integers.
const COUNT_COLUMNS: &[&str] = &["requests", "finished", "preemptions", "events"];

/// The type of one results column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// INT64.
    Int,
    /// DOUBLE.
    Float,
    /// BOOLEAN.
    Bool,
    /// BYTE_ARRAY annotated as a UTF-8 string.
    Text,
}

/// One typed value read back from a results Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An INT64 value.
    Int(i64),
    /// A DOUBLE value.
    Float(f64),
    /// A BOOLEAN value.
    Bool(bool),
    /// A string value.
    Text(String),
}

/// A results table as read back from Parquet: column names, typed rows, grid size.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedTable {
    /// Column names, as in the CSV header.
    pub columns: Vec<String>,
    /// One row per cell, in file order.
    pub rows: Vec<Vec<Value>>,
    /// `specsim.total_cells` from the metadata.
    pub total_cells: usize,
}

fn infer(values: &[&str]) -> ColumnType {
    if values.is_empty() {
        ColumnType::Text
    } else if values.iter().all(|v| v.parse::<i64>().is_ok()) {
        ColumnType::Int
    } else if values.iter().all(|v| *v == "true" || *v == "false") {
        ColumnType::Bool
    } else if values.iter().all(|v| v.parse::<f64>().is_ok()) {
        ColumnType::Float
    } else {
        ColumnType::Text
    }
}

impl SweepTable {
    /// The Parquet type of each column: fixed for `cell` and the summary columns, inferred from the
    /// values for axis columns.
    pub fn column_types(&self) -> Vec<ColumnType> {
        let summary_from = self.columns.len().saturating_sub(SUMMARY_COLUMNS.len());
        let has_summary = self.columns[summary_from..]
            .iter()
            .map(String::as_str)
            .eq(SUMMARY_COLUMNS.iter().copied());
        self.columns
            .iter()
            .enumerate()
            .map(|(c, name)| {
                if c == 0 && name == "cell" {
                    ColumnType::Int
                } else if has_summary && c >= summary_from {
                    if COUNT_COLUMNS.contains(&name.as_str()) {
                        ColumnType::Int
                    } else {
                        ColumnType::Float
                    }
                } else {
                    let values: Vec<&str> = self.rows.iter().map(|r| r[c].as_str()).collect();
                    infer(&values)
                }
            })
            .collect()
    }
}

fn perr(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Io {
        path: path.display().to_string(),
        error: std::io::Error::other(format!("parquet: {e}")),
    }
}

/// Writes `table` to `path` as Parquet.
pub fn write_parquet(path: &Path, table: &SweepTable) -> Result<(), SimError> {
    let types = table.column_types();
    let mut fields = Vec::with_capacity(types.len());
    for (name, ty) in table.columns.iter().zip(&types) {
        let (physical, logical) = match ty {
            ColumnType::Int => (PhysicalType::INT64, None),
            ColumnType::Float => (PhysicalType::DOUBLE, None),
            ColumnType::Bool => (PhysicalType::BOOLEAN, None),
            ColumnType::Text => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        };
        let field = Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(logical)
            .build()
            .map_err(|e| perr(path, e))?;
        fields.push(Arc::new(field));
    }
    let schema = Type::group_type_builder("specsim_sweep")
        .with_fields(fields)
        .build()
        .map_err(|e| perr(path, e))?;
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(
            std::iter::once(KeyValue::new(
                TOTAL_CELLS_KEY.to_string(),
                table.total_cells.to_string(),
            ))
            .chain(
                table
                    .fingerprint
                    .iter()
                    .map(|f| KeyValue::new(FINGERPRINT_KEY.to_string(), f.clone())),
            )
            .collect(),
        ))
        .build();
    let file = std::fs::File::create(path).map_err(|e| SimError::io(path, e))?;
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
        .map_err(|e| perr(path, e))?;
    if !table.rows.is_empty() {
        let mut group = writer.next_row_group().map_err(|e| perr(path, e))?;
        let mut c = 0;
        while let Some(mut col) = group.next_column().map_err(|e| perr(path, e))? {
            let texts = table.rows.iter().map(|r| r[c].as_str());
            let bad = |v: &str| perr(path, format!("column `{}`: `{v}`", table.columns[c]));
            let written = match types[c] {
                ColumnType::Int => {
                    let v = texts
                        .map(|s| s.parse::<i64>().map_err(|_| bad(s)))
                        .collect::<Result<Vec<_>, _>>()?;
                    col.typed::<Int64Type>().write_batch(&v, None, None)
                }
                ColumnType::Float => {
                    let v = texts
                        .map(|s| s.parse::<f64>().map_err(|_| bad(s)))
                        .collect::<Result<Vec<_>, _>>()?;
                    col.typed::<DoubleType>().write_batch(&v, None, None)
                }
                ColumnType::Bool => {
                    let v: Vec<bool> = texts.map(|s| s == "true").collect();
                    col.typed::<BoolType>().write_batch(&v, None, None)
                }
                ColumnType::Text => {
                    let v: Vec<ByteArray> = texts.map(ByteArray::from).collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)
                }
            };
            written.map_err(|e| perr(path, e))?;
            col.close().map_err(|e| perr(path, e))?;
            c += 1;
        }
        group.close().map_err(|e| perr(path, e))?;
    }
    writer.close().map_err(|e| perr(path, e))?;
    Ok(())
}

/// Reads a results Parquet file written by [`write_parquet`] (for tests and tools; `specsim merge`
/// reads the CSVs).
pub fn read_parquet(path: &Path) -> Result<TypedTable, SimError> {
    let file = std::fs::File::open(path).map_err(|e| SimError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| perr(path, e))?;
    let meta = reader.metadata().file_metadata();
    let columns: Vec<String> = meta
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let total_cells = meta
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == TOTAL_CELLS_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| perr(path, format!("no `{TOTAL_CELLS_KEY}` metadata")))?;
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).map_err(|e| perr(path, e))? {
        let row = row.map_err(|e| perr(path, e))?;
        let values = row
            .get_column_iter()
            .map(|(name, f)| match f {
                Field::Long(v) => Ok(Value::Int(*v)),
                Field::Double(v) => Ok(Value::Float(*v)),
                Field::Bool(v) => Ok(Value::Bool(*v)),
                Field::Str(v) => Ok(Value::Text(v.clone())),
                other => Err(perr(path, format!("column `{name}`: unexpected {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(values);
    }
    Ok(TypedTable {
        columns,
        rows,
        total_cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_types_and_the_csv_values() {
        let mut columns = vec![
            "cell".to_string(),
            "trace.synthetic.rate".to_string(),
            "models.tp".to_string(),
            "engine.chunked_prefill".to_string(),
            "policy".to_string(),
        ];
        columns.extend(SUMMARY_COLUMNS.iter().map(|s| s.to_string()));
        let row = |cell: usize, rate: &str, tp: &str, chunked: &str, policy: &str| {
            let mut r = vec![
                cell.to_string(),
                rate.to_string(),
                tp.to_string(),
                chunked.to_string(),
                policy.to_string(),
            ];
            r.extend(SUMMARY_COLUMNS.iter().enumerate().map(|(i, name)| {
                if COUNT_COLUMNS.contains(name) {
                    (100 * cell + i).to_string()
                } else if i == 10 && cell == 3 {
                    "NaN".to_string()
                } else {
                    format!("{:.9}", 0.125 * (i + cell) as f64 + 1e-9)
                }
            }));
            r
        };
        let table = SweepTable {
            columns,
            rows: vec![
                row(0, "0.5", "1", "true", "{ kind = \"none\" }"),
                row(3, "2.25", "4", "false", "static, k = 3"),
            ],
            total_cells: 8,
            fingerprint: None,
            scenario: None,
        };
        use ColumnType::*;
        let types = table.column_types();
        assert_eq!(&types[..5], &[Int, Float, Int, Bool, Text]);
        assert_eq!(types[5 + SUMMARY_COLUMNS.len() - 1], Int); // events
        assert_eq!(types[5 + 3], Float); // throughput_rps
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.parquet");
        write_parquet(&p, &table).unwrap();
        let back = read_parquet(&p).unwrap();
        assert_eq!(back.columns, table.columns);
        assert_eq!(back.total_cells, 8);
        assert_eq!(back.rows.len(), 2);
        for (typed, text) in back.rows.iter().zip(&table.rows) {
            for ((v, s), ty) in typed.iter().zip(text).zip(&types) {
                match (v, ty) {
                    (Value::Int(x), Int) => assert_eq!(*x, s.parse::<i64>().unwrap()),
                    (Value::Float(x), Float) => {
                        let want = s.parse::<f64>().unwrap();
                        assert!(x.to_bits() == want.to_bits(), "{x} vs {s}");
                    }
                    (Value::Bool(x), Bool) => assert_eq!(x.to_string(), *s),
                    (Value::Text(x), Text) => assert_eq!(x, s),
                    other => panic!("{other:?} for `{s}`"),
                }
            }
        }
        // An empty shard still records its columns and the grid size.
        let empty = SweepTable {
            rows: Vec::new(),
            ..table
        };
        write_parquet(&p, &empty).unwrap();
        let back = read_parquet(&p).unwrap();
        assert_eq!(
            (back.columns, back.rows.len(), back.total_cells),
            (empty.columns, 0, 8)
        );
    }
}
