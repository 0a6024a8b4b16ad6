//! Serde helpers for reading API JSON without building `serde_json::Value` trees.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;

/// Reads `T` from JSON `bytes`. UTF-8 is checked once for the whole text, not string by string
/// as `serde_json::from_slice` does; text that is not UTF-8 is left to `from_slice`, which
/// accepts it when the bad bytes sit in strings `T` ignores.
pub(crate) fn read_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A non-empty JSON string's value; `None` for anything else (a number, `null`, `""`).
pub(crate) fn raw_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get())
        .ok()
        .filter(|s| !s.is_empty())
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
/// (`#[serde(borrow)]` does not reach through `Option<Cow<str>>`: serde then always copies.)
#[derive(Debug)]
pub(crate) struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl Text<'_> {
    /// The string, copied if it was borrowed.
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A struct that must come as a JSON object. Serde's derived structs also accept an array
/// (fields by position); wrapped in `Object`, an array is an error instead.
#[derive(Debug)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(StructAsMap(deserializer, PhantomData)).map(Object)
    }
}

/// Passes a derived struct's request for a struct on as a request for a map.
struct StructAsMap<'de, D: Deserializer<'de>>(D, PhantomData<&'de ()>);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for StructAsMap<'de, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Choice<'a> {
        #[serde(borrow)]
        finish_reason: Option<Text<'a>>,
    }

    #[test]
    fn text_borrows_unless_escaped() {
        let plain: Text<'_> = serde_json::from_str(r#""stop""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("stop")));
        let escaped: Text<'_> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "a\nb"));
    }

    #[test]
    fn read_json_checks_utf8_once_and_still_reads_what_from_slice_reads() {
        let choice: Choice<'_> = read_json(br#"{"finish_reason": "stop"}"#).unwrap();
        assert!(matches!(
            choice.finish_reason,
            Some(Text(Cow::Borrowed("stop")))
        ));
        // Not UTF-8, but only inside a string the struct ignores: read as from_slice reads it.
        let choice: Choice<'_> =
            read_json(b"{\"finish_reason\": \"stop\", \"x\": \"\xff\"}").unwrap();
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        let error = read_json::<Choice<'_>>(b"{\"finish_reason\": \"\xff\"}").unwrap_err();
        assert!(error.to_string().contains("invalid unicode"), "{error}");
    }

    #[test]
    fn object_refuses_an_array_that_a_derived_struct_would_take() {
        assert!(serde_json::from_str::<Choice<'_>>(r#"["stop"]"#).is_ok());
        assert!(serde_json::from_str::<Object<Choice<'_>>>(r#"["stop"]"#).is_err());
        let choice: Object<Choice<'_>> =
            serde_json::from_str(r#"{"finish_reason": "stop", "x": [1]}"#).unwrap();
        assert_eq!(choice.0.finish_reason.as_deref(), Some("stop"));
    }
}

/// A collection [`Capped`] reads into.
pub(crate) trait Collect<T>: Default {
    fn collect_one(&mut self, item: T);
}

impl<T> Collect<T> for Vec<T> {
    fn collect_one(&mut self, item: T) {
        self.push(item);
    }
}

impl<A: smallvec::Array> Collect<A::Item> for smallvec::SmallVec<A> {
    fn collect_one(&mut self, item: A::Item) {
        self.push(item);
    }
}

/// A JSON array of which at most `MAX` elements are read into `C`; the rest are skipped
/// without being built (`skipped` says so). One hostile event of millions of `{}` elements
/// would otherwise cost each a struct before any budget could refuse it.
#[derive(Debug)]
pub(crate) struct Capped<T, C, const MAX: usize> {
    pub(crate) items: C,
    pub(crate) skipped: bool,
    element: PhantomData<T>,
}

impl<'de, T, C, const MAX: usize> Deserialize<'de> for Capped<T, C, MAX>
where
    T: Deserialize<'de>,
    C: Collect<T>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CappedVisitor<T, C, const MAX: usize>(PhantomData<(T, C)>);
        impl<'de, T, C, const MAX: usize> Visitor<'de> for CappedVisitor<T, C, MAX>
        where
            T: Deserialize<'de>,
            C: Collect<T>,
        {
            type Value = Capped<T, C, MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                let mut items = C::default();
                let mut read = 0;
                while read < MAX {
                    match seq.next_element::<T>()? {
                        Some(item) => items.collect_one(item),
                        None => return Ok(Capped::new(items, false)),
                    }
                    read += 1;
                }
                let mut skipped = false;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    skipped = true;
                }
                Ok(Capped::new(items, skipped))
            }
        }
        deserializer.deserialize_seq(CappedVisitor::<T, C, MAX>(PhantomData))
    }
}

impl<T, C, const MAX: usize> Capped<T, C, MAX> {
    fn new(items: C, skipped: bool) -> Self {
        Capped {
            items,
            skipped,
            element: PhantomData,
        }
    }
}

#[cfg(test)]
mod capped_tests {
    use super::*;

    #[test]
    fn reads_at_most_max_elements_and_says_when_it_skipped() {
        let few: Capped<u32, Vec<u32>, 3> = serde_json::from_str("[1,2,3]").expect("array");
        assert_eq!((few.items, few.skipped), (vec![1, 2, 3], false));
        let many: Capped<u32, Vec<u32>, 3> =
            serde_json::from_str(r#"[1,2,3,{"x":[4]},5]"#).expect("array");
        assert_eq!((many.items, many.skipped), (vec![1, 2, 3], true));
        assert!(serde_json::from_str::<Capped<u32, Vec<u32>, 3>>(r#"{"a":1}"#).is_err());
    }
}
