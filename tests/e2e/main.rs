//! End-to-end tests: real `csms` processes, real TLS, clients we did not write.

mod harness;

mod durability;
mod frames;
mod interop;
mod refusals;
