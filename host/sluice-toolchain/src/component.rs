//! Reading and appending top-level custom sections of WebAssembly components.

/// The preamble of a component binary: `\0asm`, version 0x0d, layer 0x01.
pub const COMPONENT_MAGIC: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// The custom section holding a plugin's source hash (hex SHA-256).
pub const SOURCE_HASH_SECTION: &str = "sluice:source-hash";

/// The custom section naming the SDK a plugin was built with, e.g. `sluice-plugin 0.5.0` or
/// `sluice-plugin-py 0.5.0`. The Rust SDK's `export_handler!` puts it in the plugin's core
/// module (as a `#[link_section]` literal that must match this name); `sluice plugin build`
/// adds it at the top level of a Python plugin's component.
pub const SDK_SECTION: &str = "sluice:sdk";

/// Whether `bytes` starts with the component preamble (not a core module's).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(&COMPONENT_MAGIC)
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(result).ok();
        }
    }
    None
}

fn write_leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The payload of the last top-level custom section called `name` in a
/// component (or core module) binary, or `None` if there is none or the
/// binary is malformed. Nested modules' sections are not searched.
pub fn read_custom_section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return None;
    }
    let mut pos = 8;
    let mut found = None;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos)? as usize;
        let end = pos.checked_add(size).filter(|&e| e <= bytes.len())?;
        if id == 0 {
            let mut p = pos;
            let name_len = read_leb_u32(bytes, &mut p)? as usize;
            let name_end = p.checked_add(name_len).filter(|&e| e <= end)?;
            if &bytes[p..name_end] == name.as_bytes() {
                found = Some(&bytes[name_end..end]);
            }
        }
        pos = end;
    }
    found
}

/// Like [`read_custom_section`], but also searching the core modules and components nested in a
/// component (depth first, the top level first).
pub fn read_custom_section_deep<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if let Some(found) = read_custom_section(bytes, name) {
        return Some(found);
    }
    if !is_component(bytes) {
        return None;
    }
    // Component sections 1 (core module) and 4 (component) hold whole nested binaries.
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos)? as usize;
        let end = pos.checked_add(size).filter(|&e| e <= bytes.len())?;
        if (id == 1 || id == 4)
            && let Some(found) = read_custom_section_deep(&bytes[pos..end], name)
        {
            return Some(found);
        }
        pos = end;
    }
    None
}

/// Whether a component (or one of its nested modules) has a custom section `name`.
pub fn has_custom_section(bytes: &[u8], name: &str) -> bool {
    read_custom_section_deep(bytes, name).is_some()
}

/// Appends a top-level custom section `name` with `payload` to a binary.
pub fn append_custom_section(bytes: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::with_capacity(5 + name.len() + payload.len());
    write_leb_u32(&mut body, name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    bytes.push(0x00);
    write_leb_u32(bytes, body.len() as u32);
    bytes.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn append_then_read() {
        let mut bytes = COMPONENT_MAGIC.to_vec();
        assert!(is_component(&bytes));
        assert_eq!(read_custom_section(&bytes, "x"), None);
        append_custom_section(&mut bytes, "other", b"zz");
        let long = vec![7u8; 300];
        append_custom_section(&mut bytes, SOURCE_HASH_SECTION, &long);
        assert_eq!(read_custom_section(&bytes, SOURCE_HASH_SECTION), Some(&long[..]));
        assert_eq!(read_custom_section(&bytes, "other"), Some(&b"zz"[..]));
        assert_eq!(read_custom_section(&bytes, "missing"), None);
        bytes.truncate(bytes.len() - 1);
        assert_eq!(read_custom_section(&bytes, SOURCE_HASH_SECTION), None);
    }

    #[test]
    fn nested_sections_are_found() {
        let mut core = b"\0asm\x01\0\0\0".to_vec();
        append_custom_section(&mut core, SDK_SECTION, b"sluice-plugin 9.9.9");
        let mut comp = COMPONENT_MAGIC.to_vec();
        append_custom_section(&mut comp, "other", b"x");
        comp.push(1);
        write_leb_u32(&mut comp, core.len() as u32);
        comp.extend_from_slice(&core);
        assert_eq!(read_custom_section(&comp, SDK_SECTION), None);
        assert_eq!(read_custom_section_deep(&comp, SDK_SECTION), Some(&b"sluice-plugin 9.9.9"[..]));
        assert!(has_custom_section(&comp, SDK_SECTION) && !has_custom_section(&comp, "nope"));
        // A top-level section wins over a nested one.
        append_custom_section(&mut comp, SDK_SECTION, b"top");
        assert_eq!(read_custom_section_deep(&comp, SDK_SECTION), Some(&b"top"[..]));
    }

    #[test]
    fn leb_round_trip() {
        for v in [0, 1, 127, 128, 300, 1 << 20, u32::MAX] {
            let mut out = Vec::new();
            write_leb_u32(&mut out, v);
            assert_eq!(read_leb_u32(&out, &mut 0), Some(v));
        }
    }
}
