//! Integration and conformance tests for tether; the tests live in `tests/`.
