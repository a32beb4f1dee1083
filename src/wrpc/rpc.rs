//! What an RPC is: its service and rpc ids and its message types ([`Rpc`], defined with
//! [`wrpc_service!`](crate::wrpc_service)), and how its handler fails ([`HandlerError`]).

use std::fmt;

/// One RPC of a service: its ids and its request and response types.
pub trait Rpc: 'static {
    /// The service id (`+wrpc:service-id`), above 0.
    const SERVICE_ID: u32;
    /// The rpc id within the service (`+wrpc:rpc-id`), above 0.
    const RPC_ID: u32;
    /// `Service.Rpc`, for logs and errors.
    const NAME: &'static str;
    /// The request message.
    type Request: prost::Message + Default + Send + 'static;
    /// The response message.
    type Response: prost::Message + Default + Send + 'static;
}

/// Defines a service: a unit struct with the service id, and one unit struct per rpc
/// implementing [`Rpc`].
///
/// ```
/// use dpspec::wrpc_service;
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct EchoRequest { #[prost(string, tag = "1")] pub s: String }
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct EchoResponse { #[prost(string, tag = "1")] pub s: String }
/// wrpc_service! {
///     /// The echo service of the wRPC examples.
///     pub service EchoService = 1 {
///         /// Answers "echo-" + s.
///         rpc Echo = 1 (EchoRequest) -> EchoResponse;
///     }
/// }
/// assert_eq!(EchoService::ID, 1);
/// use dpspec::wrpc::Rpc;
/// assert_eq!(<Echo as Rpc>::RPC_ID, 1);
/// ```
#[macro_export]
macro_rules! wrpc_service {
    (
        $(#[$meta:meta])*
        $vis:vis service $service:ident = $id:literal {
            $(
                $(#[$rmeta:meta])*
                rpc $rpc:ident = $rid:literal ($req:ty) -> $resp:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $service;

        impl $service {
            /// The service id.
            pub const ID: u32 = $id;
        }

        $(
            $(#[$rmeta])*
            #[derive(Debug, Clone, Copy)]
            $vis struct $rpc;

            impl $crate::wrpc::Rpc for $rpc {
                const SERVICE_ID: u32 = $id;
                const RPC_ID: u32 = $rid;
                const NAME: &'static str = concat!(stringify!($service), ".", stringify!($rpc));
                type Request = $req;
                type Response = $resp;
            }
        )*
    };
}

/// A handler's failure: the text goes to the caller in an ERROR of type GENERIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(pub String);

impl HandlerError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError(message.into())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.to_string())
    }
}
