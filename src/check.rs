//! `LeakCheck`: scoped exact leak checks for tests.
//!
//! STUB: owned by the leak-check work (issue 4).
