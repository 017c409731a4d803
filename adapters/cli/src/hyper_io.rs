//! hyper's I/O traits over the futures-io streams every runtime here hands out: the drivers'
//! own adapter, which their HTTP client transport uses too, so that it is written once.

pub use tether_io::HyperIo;
