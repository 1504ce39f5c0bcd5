//! The chain as an embedder uses it (a Spark or Ray task): batches in, batches and rejects out,
//! with nothing but the chain. Two native steps: one sets negative values aside through the
//! reject column, one holds every row and outputs their sum when the input ends.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_chain::plugin::{Handler, LookupTable, Plugin, PluginInfo, StateSpec};
use sluice_chain::spec::Limits;
use sluice_chain::{Chain, ChainStep, PluginError, REJECT};

fn info(name: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: "1".into(),
        summary: String::new(),
        config_doc: String::new(),
        contract: "native".into(),
        component_hash: String::new(),
        sdk: String::new(),
    }
}

/// Rows with a negative `x` are rejected.
struct Flag(PluginInfo);
struct FlagHandler;

/// Every row is held; `finish` outputs the sum of `x`.
struct Sum(PluginInfo);
#[derive(Default)]
struct SumHandler(i64);

impl Plugin for Flag {
    fn info(&self) -> &PluginInfo {
        &self.0
    }
    fn instantiate_with_tables(
        &self,
        _: &str,
        _: &[Arc<LookupTable>],
        _: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError> {
        Ok(Box::new(FlagHandler))
    }
}

impl Plugin for Sum {
    fn info(&self) -> &PluginInfo {
        &self.0
    }
    fn instantiate_with_tables(
        &self,
        config: &str,
        _: &[Arc<LookupTable>],
        _: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError> {
        if config != "null" {
            return Err(PluginError::Config { message: "takes no config".into(), key: None });
        }
        Ok(Box::new(SumHandler::default()))
    }
}

impl Handler for FlagHandler {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(REJECT, DataType::Utf8, true));
        Ok(Arc::new(Schema::new(fields)))
    }
    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        Ok(None)
    }
    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let x = batch.column(0).as_primitive::<Int64Type>();
        let reasons: StringArray = x.iter().map(|v| v.filter(|v| *v < 0).map(|_| "negative")).collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(reasons));
        Ok(vec![RecordBatch::try_new(self.output_schema(&batch.schema())?, columns).unwrap()])
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        Ok(Vec::new())
    }
}

fn sum_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("sum", DataType::Int64, false)]))
}

impl Handler for SumHandler {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        match input.column_with_name("x") {
            Some(_) => Ok(sum_schema()),
            None => Err(PluginError::Data { message: "no column `x`".into(), row: None, column: Some("x".into()) }),
        }
    }
    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        Ok(None)
    }
    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        self.0 += batch.column_by_name("x").unwrap().as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        Ok(Vec::new())
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        Ok(vec![RecordBatch::try_new(sum_schema(), vec![Arc::new(Int64Array::from(vec![self.0]))]).unwrap()])
    }
}

fn step(name: &str, plugin: Arc<dyn Plugin>, config: &str) -> ChainStep {
    ChainStep { name: name.into(), plugin, config_json: config.into(), limits: Limits::default() }
}

fn input(xs: Vec<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(xs))]).unwrap()
}

#[test]
fn batches_through_steps_with_rejects_split_off_and_held_rows_flushed() {
    let steps =
        vec![step("flag", Arc::new(Flag(info("flag"))), "null"), step("sum", Arc::new(Sum(info("sum"))), "null")];
    let mut chain = Chain::new(steps);
    // The next step sees the flag step's output without the reject column.
    assert_eq!(chain.output_schema(&input(vec![]).schema()).unwrap(), sum_schema());

    assert!(chain.process(input(vec![1, -2, 3])).unwrap().is_empty(), "the sum holds its rows");
    assert!(chain.process(input(vec![-4, 5])).unwrap().is_empty());
    let out = chain.finish().unwrap();
    assert_eq!(out[0].column(0).as_primitive::<Int64Type>().values(), &[9]);
    let rejects = chain.take_rejects();
    let got: Vec<(&str, &str, &str)> =
        rejects.iter().map(|r| (r.raw.as_str(), r.reason.as_str(), r.step.as_str())).collect();
    assert_eq!(got, [("x=-2", "negative", "flag"), ("x=-4", "negative", "flag")]);
    assert_eq!(chain.reject_steps(), ["flag"]);
    let stats = chain.take_stats();
    assert_eq!((stats[0].rows_in, stats[0].rows_out), (5, 3));
    assert_eq!((stats[1].rows_in, stats[1].rows_out, stats[1].calls), (3, 1, 3));
}

#[test]
fn a_steps_errors_name_it() {
    let steps = vec![step("flag", Arc::new(Flag(info("flag"))), "null"), step("sum", Arc::new(Sum(info("sum"))), "{}")];
    let mut chain = Chain::new(steps);
    let e = chain.process(input(vec![1])).unwrap_err();
    assert_eq!((e.index, e.name.as_str()), (1, "sum"));
    assert_eq!(e.to_string(), "step 2 `sum`: invalid config: takes no config");
    let renamed = Arc::new(Schema::new(vec![Field::new("y", DataType::Int64, false)]));
    let chain = Chain::new(vec![step("sum", Arc::new(Sum(info("sum"))), "null")]);
    assert!(chain.output_schema(&renamed).unwrap_err().to_string().contains("no column `x`"));
}
