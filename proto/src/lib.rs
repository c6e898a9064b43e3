//! Tributary's internal gRPC services (see `tributary.proto`), generated at build time.
#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("tributary.v1");
}

pub use v1::*;
