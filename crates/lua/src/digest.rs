//! KumoMTA's `kumo.digest` and `kumo.encode` modules.
//!
//! `kumo.digest.sha256(…)` (also `md5`, `sha1`, `sha224`, `sha384`,
//! `sha512`) digests its arguments in order: a string as its bytes, any
//! other value as its JSON text, as KumoMTA does. The answer is a Digest
//! object whose fields give the bytes (`bytes`) or an encoding of them
//! (`hex`, `base32`, `base32_nopad`, `base32hex`, `base32hex_nopad`,
//! `base64`, `base64_nopad`, `base64url`, `base64url_nopad`); turned into
//! a string it is its hex.
//!
//! `kumo.encode.base64_encode(s)` / `base64_decode(s)` and the same pairs
//! for `base64url`, `base32`, `base32hex` and `hex` (each also as
//! `_nopad` where padding exists): a decode of text that is not in the
//! encoding is an error the script can `pcall`.
//!
//! These compute over data the script already holds, so they need no
//! bound beyond the state's memory limit.

use data_encoding::Encoding;
use mlua::{Lua, LuaSerdeExt, MultiValue, Table, UserData, UserDataFields, UserDataMethods, Value};

/// The encodings KumoMTA names, by name.
fn encodings() -> [(&'static str, Encoding); 9] {
    use data_encoding::*;
    [
        ("hex", HEXLOWER),
        ("base32", BASE32),
        ("base32_nopad", BASE32_NOPAD),
        ("base32hex", BASE32HEX),
        ("base32hex_nopad", BASE32HEX_NOPAD),
        ("base64", BASE64),
        ("base64_nopad", BASE64_NOPAD),
        ("base64url", BASE64URL),
        ("base64url_nopad", BASE64URL_NOPAD),
    ]
}

/// A digest's bytes.
pub(crate) struct Digest(pub Vec<u8>);

impl UserData for Digest {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("bytes", |lua, d| lua.create_string(&d.0));
        for (name, encoding) in encodings() {
            fields.add_field_method_get(name, move |_, d| Ok(encoding.encode(&d.0)));
        }
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, d, ()| {
            Ok(data_encoding::HEXLOWER.encode(&d.0))
        });
    }
}

/// The bytes an argument contributes: a string's own, else its JSON.
fn argument_bytes(lua: &Lua, value: Value) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => {
            let json: serde_json::Value = lua.from_value(other)?;
            Ok(json.to_string().into_bytes())
        }
    }
}

fn digest_function<D: sha2::Digest + 'static>(lua: &Lua) -> mlua::Result<mlua::Function> {
    lua.create_function(|lua, args: MultiValue| {
        let mut hasher = D::new();
        for arg in args {
            hasher.update(argument_bytes(lua, arg)?);
        }
        Ok(Digest(hasher.finalize().to_vec()))
    })
}

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let digest = lua.create_table()?;
    digest.set("md5", digest_function::<md5::Md5>(lua)?)?;
    digest.set("sha1", digest_function::<sha1::Sha1>(lua)?)?;
    digest.set("sha224", digest_function::<sha2::Sha224>(lua)?)?;
    digest.set("sha256", digest_function::<sha2::Sha256>(lua)?)?;
    digest.set("sha384", digest_function::<sha2::Sha384>(lua)?)?;
    digest.set("sha512", digest_function::<sha2::Sha512>(lua)?)?;
    kumo.set("digest", digest)?;

    let encode = lua.create_table()?;
    for (name, encoding) in encodings() {
        let encoder = encoding.clone();
        encode.set(
            format!("{name}_encode"),
            lua.create_function(move |_, data: mlua::String| Ok(encoder.encode(&data.as_bytes())))?,
        )?;
        // Hex decodes either case, as KumoMTA's does.
        let decoder = match name {
            "hex" => data_encoding::HEXLOWER_PERMISSIVE,
            _ => encoding.clone(),
        };
        encode.set(
            format!("{name}_decode"),
            lua.create_function(move |lua, text: mlua::String| {
                let bytes = decoder
                    .decode(&text.as_bytes())
                    .map_err(|e| mlua::Error::runtime(format!("kumo.encode.{name}_decode: {e}")))?;
                lua.create_string(bytes)
            })?,
        )?;
    }
    kumo.set("encode", encode)
}
