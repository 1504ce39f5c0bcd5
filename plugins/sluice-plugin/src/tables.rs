//! Lookup tables a step passes to its handler's constructor (`tables:` in the YAML).

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::Error;

/// One lookup table: its name in the step's `tables:` and its rows.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    /// A table from batches that all have `schema`.
    pub fn new(name: impl Into<String>, schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Table { name: name.into(), schema, batches }
    }

    /// The whole table as one batch.
    pub fn concat(&self) -> Result<RecordBatch, Error> {
        arrow_select::concat::concat_batches(&self.schema, &self.batches)
            .map_err(|e| Error::internal(format!("table `{}`: {e}", self.name)))
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The lookup tables of a step, in the order the pipeline lists them. Read by the host from
/// CSV (with a header; types inferred) or Parquet files and given to
/// [`Handler::new_with_tables`](crate::Handler::new_with_tables).
#[derive(Debug, Clone, Default)]
pub struct Tables(Vec<Table>);

impl Tables {
    pub fn new(tables: Vec<Table>) -> Self {
        Tables(tables)
    }

    /// The table named `name`.
    pub fn get(&self, name: &str) -> Option<&Table> {
        self.0.iter().find(|t| t.name == name)
    }

    /// The table named `name`, or a config error on `key` listing the tables there are.
    pub fn require(&self, name: &str, key: &str) -> Result<&Table, Error> {
        self.get(name).ok_or_else(|| {
            let have = self.names();
            let have = if have.is_empty() { "none".to_string() } else { have.join(", ") };
            Error::config(format!("no lookup table `{name}` in the step's `tables:` (tables: {have})")).key(key)
        })
    }

    /// The tables' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|t| t.name.as_str()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Table> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the tables as passed through the WIT (`list<tuple<string, ipc-stream>>`).
    pub fn from_ipc(tables: Vec<(String, Vec<u8>)>) -> Result<Self, Error> {
        let mut out = Vec::with_capacity(tables.len());
        for (name, bytes) in tables {
            let (schema, batches) = crate::ipc::read_stream(bytes)
                .map_err(|e| Error::internal(format!("lookup table `{name}`: {}", e.message())))?;
            out.push(Table { name, schema, batches });
        }
        Ok(Tables(out))
    }
}
