//! Fuzz what an S3 server sends the s3 source: listing pages, error documents, checksum files
//! and `Retry-After` values must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_s3::fuzzing::server_replies(data));
