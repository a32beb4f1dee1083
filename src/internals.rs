//! How the implementation is kept out of the public API, yet reachable by this crate's own
//! tests, fuzz targets and benchmarks.
//!
//! Each macro declares something twice: crate-private, or public and hidden from the docs
//! when the `internals` feature is on (the crate's dev-dependency on itself turns it on).
//! Nothing reached only through `internals` is covered by semver, and what only those
//! users use is not dead code.

/// Declares a module of the implementation: crate-private, or public but hidden from the
/// docs with the `internals` feature, which this crate's own tests, fuzz targets and
/// benchmarks turn on. Nothing reached only through `internals` is covered by semver.
macro_rules! internal {
    ($(#[$meta:meta])* mod $name:ident;) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        $(#[$meta])*
        pub mod $name;
        // What only the tests, fuzz targets and benchmarks use is not dead code.
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        $(#[$meta])*
        pub(crate) mod $name;
    };
}

/// Re-exports items of the implementation: crate-private, or public but hidden from the
/// docs with the `internals` feature (see `internal!`).
macro_rules! internal_use {
    ($($path:tt)*) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub use $($path)*;
        #[cfg(not(feature = "internals"))]
        #[allow(unused_imports)]
        pub(crate) use $($path)*;
    };
}

/// Declares a function or method of the implementation (see `internal!`).
macro_rules! internal_fn {
    ($(#[$meta:meta])* fn $($rest:tt)*) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        $(#[$meta])*
        pub fn $($rest)*
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code)]
        $(#[$meta])*
        pub(crate) fn $($rest)*
    };
}

/// Declares a public struct whose fields belong to the implementation (see `internal!`):
/// users reach them through methods.
macro_rules! internal_fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        #[cfg(feature = "internals")]
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* #[doc(hidden)] pub $field: $ty,)*
        }
        #[cfg(not(feature = "internals"))]
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }
    };
}
