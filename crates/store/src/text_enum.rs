//! `text_enum!`: the enums stored as TEXT get `ALL`, `as_str`, `Display` and `FromStr` with one
//! spelling, the serde one (a test per enum checks the two agree).

/// The enums the database stores as TEXT, spelled as serde spells them (checked by a test), so a
/// row reads the same in SQL as in the API.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every variant, for exhaustive tests.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, $crate::UnknownVariant> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownVariant { what: stringify!($name), value: s.to_string() }),
                }
            }
        }
    };
}
