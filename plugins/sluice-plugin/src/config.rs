//! Config parsing: JSON text to the handler's config type, with dotted key paths in errors.

use serde::de::DeserializeOwned;

use crate::Error;

/// Parses a step's config JSON into `T`.
///
/// A bad config yields [`Error::Config`] whose key is the dotted path of the
/// offending key (`columns.0`, `window`). `null` (or empty text) means "no
/// config": it deserializes into `Option`/unit types directly and otherwise as
/// `{}`, so config types whose fields all have defaults accept it.
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let text = json.trim();
    let text = if text.is_empty() { "null" } else { text };
    match parse_text::<T>(text) {
        Err(e) if text == "null" => parse_text::<T>("{}").map_err(|_| e),
        r => r,
    }
}

fn parse_text<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let message = strip_position(&e.inner().to_string());
        let err = Error::config(message);
        match dotted(e.path()) {
            Some(path) => err.key(path),
            None => err,
        }
    })?;
    de.end().map_err(|e| Error::config(strip_position(&e.to_string())))?;
    Ok(value)
}

/// The path as `a.0.b` (the crate's own Display writes `a[0].b`).
fn dotted(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// serde_json appends ` at line L column C`; the host reports the config's
/// location itself, so the position inside the JSON text is noise.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        window: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        sma: Vec<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Defaults {
        n: u32,
    }

    fn key(e: Error) -> Option<String> {
        match e {
            Error::Config { key, .. } => key,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn bad_value_names_dotted_key() {
        let e = parse_config::<Cfg>(r#"{"sma":[{"window":"x"}]}"#).unwrap_err();
        assert_eq!(key(e).as_deref(), Some("sma.0.window"));
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = parse_config::<Cfg>(r#"{"sma":[{"window":3,"wndow":2}]}"#).unwrap_err();
        assert!(e.message().contains("wndow"), "{e}");
        assert_eq!(key(e).as_deref(), Some("sma.0.wndow"));
    }

    #[test]
    fn null_means_defaults() {
        assert_eq!(parse_config::<Defaults>("null").unwrap(), Defaults { n: 0 });
        assert_eq!(parse_config::<Option<Cfg>>("null").unwrap(), None);
        assert!(parse_config::<Cfg>("null").is_err());
    }

    #[test]
    fn message_has_no_position() {
        let e = parse_config::<Cfg>("{").unwrap_err();
        assert!(!e.message().contains("line"), "{e}");
    }
}
