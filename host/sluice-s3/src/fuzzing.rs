//! Entry points for the fuzz targets (`fuzz/`): the parsers of what a server sends.

/// A ListObjectsV2 page, an S3 error document, a `.CHECKSUM` file and a `Retry-After` value,
/// from arbitrary bytes: never a panic.
pub fn server_replies(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(page) = crate::client::parse_page(&text) {
        for o in &page.objects {
            let _ = crate::fetch::valid_key(&o.key);
        }
    }
    let _ = crate::fetch::parse_checksum(&text, "BTCUSDT-1s-2024-01-01.zip");
    let _ = crate::policy::retry_after(&text, std::time::SystemTime::UNIX_EPOCH);
    let _ = crate::client::unquote(&text);
}
