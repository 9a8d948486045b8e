//! [`Frame`]: one symbolized frame, what every reader and renderer names a stack with.

use serde::{Deserialize, Serialize};

/// One symbolized frame. An address with inlined calls yields several frames.
///
/// ```
/// let f = heapsampler::Frame { address: 0x1234, function: Some("main".into()), file: None, line: None };
/// assert_eq!(f.function.as_deref(), Some("main"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The return address this frame was resolved from.
    pub address: u64,
    /// Demangled function name, without the hash suffix.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}
